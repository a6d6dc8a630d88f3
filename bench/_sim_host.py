"""Many simulated vLLM pods in one process of their own, for the xl scale benchmark.

bench/scale.py --size xl runs several of these: the benchmark's own process cannot serve 5,000 pods
and drive the API server at once. Started with one JSON argument, `{"pods": N, "max_loras": ...,
"max_cpu_loras": ..., "load_latency_ms": ...}`; prints one JSON line `{"ports": [...]}` once every
pod listens on 127.0.0.1, serves until its standard input closes, then prints `{"loads": N}` (the
successful loads its pods handled) and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys

from lora_controller.cli.logging import configure_logging
from lora_controller.simulator.config import PodConfig
from lora_controller.simulator.fleet import SimulatedFleet


async def main(job: dict[str, float]) -> None:
    async with SimulatedFleet() as fleet:
        pods = []
        for _ in range(int(job["pods"])):
            config = PodConfig(model="tiny-llama", max_loras=int(job["max_loras"]),
                               max_cpu_loras=int(job["max_cpu_loras"]))
            config.faults.load_latency_ms = job["load_latency_ms"]
            pods.append(await fleet.add_pod(config, host="127.0.0.1"))
        print(json.dumps({"ports": [p.port for p in pods]}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        loads = sum(1 for p in pods for e in p.load_log if e.action == "load" and e.status == 200)
        print(json.dumps({"loads": loads}), flush=True)


if __name__ == "__main__":
    configure_logging(fmt="json", level="warning")
    asyncio.run(main(json.loads(sys.argv[1])))
