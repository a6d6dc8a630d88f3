"""The floor of the convergence benchmark: the same loads sent straight by the vLLM client.

Run as its own process (as the controller is) by bench/convergence.py: it reads one JSON object
from stdin, `{"ports": [...], "paths": [[...], ...], "concurrency": N}` (the adapters to load on
the simulated pod at each port), loads them all with the controller's vLLM client and its per-pod
concurrency, and prints the seconds from the first request to the last answer. What separates the
controller's time from this is the controller's own work; what separates this from the lower bound
is the client's and the simulated pods' (HTTP, reading the adapter files).
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import sys
import time

from lora_controller.cli.logging import configure_logging
from lora_controller.vllm.client import VllmClient, create_session
from lora_controller.vllm.endpoint import Endpoint


async def main() -> None:
    job = json.loads(sys.stdin.read())
    session = create_session(limit=256, limit_per_host=max(job["concurrency"] + 2, 4))
    client = VllmClient(session=session, timeout=10, load_timeout=120,
                        load_concurrency_per_pod=job["concurrency"])
    try:
        started = time.monotonic()
        await asyncio.gather(*(
            client.load_adapter(Endpoint(host="127.0.0.1", port=port),
                                name=posixpath.basename(path), path=path)
            for port, paths in zip(job["ports"], job["paths"], strict=True) for path in paths))
        print(json.dumps({"seconds": time.monotonic() - started}))
    finally:
        await session.close()


if __name__ == "__main__":
    configure_logging(fmt="json", level="warning")  # as the controller runs in the benchmarks
    asyncio.run(main())
