"""Benchmark: convergence time of one LoraAdapter against its lower bound.

One resource selects 200 local adapters, 2 replicas each, onto 20 simulated vLLM pods whose loads take
a fixed latency; the controller loads with its per-pod concurrency. The lower bound is
(loads per pod / concurrency) x latency. Time is measured from the create (what `kubectl apply`
does) to the resource's status saying Ready for its generation. Last line: one JSON object with
`ready_s`, `lower_bound_s`, `ratio` (and the parameters).

    python bench/convergence.py [--adapters 200] [--pods 20] [--replicas 2] [--latency-ms 200] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time

from _common import add_pods, start_controller

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import wait_all_ready
from lora_controller.devenv.local import LocalCluster


async def run(args: argparse.Namespace) -> dict[str, float | int]:
    async with LocalCluster() as world:
        ns = "bench"
        cluster = await world.namespace(ns)
        names = [f"adapter-{i:04d}" for i in range(args.adapters)]
        root = write_adapters(world.workdir / "adapters", names, shared_weights=True)
        await add_pods(cluster, args.pods, max_loras=4, max_cpu_loras=64, load_latency_ms=args.latency_ms)
        await start_controller(world, "--namespace", ns, "--no-leader-elect", "--poll-interval", "5",
                               *args.controller_args, "--load-concurrency", str(args.concurrency))
        await asyncio.sleep(1.0)  # let the controller's first poll of every pod finish
        started = time.monotonic()
        await cluster.apply("bench", {
            "baseModel": "tiny-llama",
            "adapterSource": {"type": "local", "repository": str(root), "maxAdapters": args.adapters},
            "deploymentConfig": {"replicas": args.replicas,
                                 "podSelector": {"matchLabels": {"lora-enabled": "true"}}},
        })
        ready_s = await wait_all_ready(world.kube, 1, namespace=ns, timeout=600, poll=0.02)
        elapsed = time.monotonic() - started
        loads = [sum(1 for e in sim.load_log if e.action == "load" and e.status == 200)
                 for sim in world.sims.values()]
        per_pod = math.ceil(args.adapters * args.replicas / args.pods)
        lower = math.ceil(per_pod / args.concurrency) * args.latency_ms / 1000
        assert sum(loads) == args.adapters * args.replicas, loads
        return {
            "ready_s": round(ready_s, 3),
            "lower_bound_s": round(lower, 3),
            "ratio": round(ready_s / lower, 3),
            "apply_to_ready_s": round(elapsed, 3),
            "loads": sum(loads),
            "max_concurrent_loads_per_pod": max(s.max_concurrent_loads for s in world.sims.values()),
            "adapters": args.adapters, "pods": args.pods, "replicas": args.replicas,
            "latency_ms": args.latency_ms, "concurrency": args.concurrency,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapters", type=int, default=200)
    p.add_argument("--pods", type=int, default=20)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--latency-ms", type=float, default=200)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--controller-args", nargs="*", default=[], help="extra flags for the controller")
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
