"""Benchmark: drift repair. A vLLM pod restarts and forgets its adapters (its restart count goes up,
as the kubelet reports); time until its `/v1/models` lists them all again.

`load_s` is the pure load time of the lost adapters at the controller's per-pod concurrency
((adapters / concurrency) x latency); the target is `repair_s` < 2 s + `load_s`. Last line: one JSON
object with `repair_s`, `load_s` (and the parameters).

    python bench/drift.py [--pods 4] [--adapters 40] [--latency-ms 100] [--concurrency 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time

from _common import add_pods, start_controller

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import wait_all_ready
from lora_controller.devenv.local import LocalCluster


async def run(args: argparse.Namespace) -> dict[str, float | int]:
    async with LocalCluster() as world:
        ns = "bench"
        cluster = await world.namespace(ns)
        names = [f"adapter-{i:03d}" for i in range(args.adapters)]
        root = write_adapters(world.workdir / "adapters", names, shared_weights=True)
        await add_pods(cluster, args.pods, max_cpu_loras=max(64, args.adapters), load_latency_ms=args.latency_ms)
        await start_controller(world, "--namespace", ns, "--no-leader-elect", "--poll-interval", "10",
                               "--load-concurrency", str(args.concurrency))
        await cluster.apply("drift", {
            "baseModel": "tiny-llama",
            "adapterSource": {"type": "local", "repository": str(root), "maxAdapters": args.adapters},
            "deploymentConfig": {"podSelector": {"matchLabels": {"lora-enabled": "true"}}}})
        await wait_all_ready(world.kube, 1, namespace=ns, timeout=300)
        repairs = []
        for rnd in range(args.rounds):
            name = sorted(cluster.pods)[rnd % args.pods]
            sim = cluster.pods[name].sim
            await cluster.restart_vllm(name)
            started = time.monotonic()
            await cluster.set_status(name)  # the kubelet reports the restart
            while len(sim.adapters) < args.adapters:
                await asyncio.sleep(0.005)
            repairs.append(time.monotonic() - started)
            await wait_all_ready(world.kube, 1, namespace=ns, timeout=120)
        load_s = math.ceil(args.adapters / args.concurrency) * args.latency_ms / 1000
        return {
            "repair_s": round(statistics.median(repairs), 3),
            "load_s": round(load_s, 3),
            "overhead_s": round(statistics.median(repairs) - load_s, 3),
            "repair_s_max": round(max(repairs), 3),
            "rounds": args.rounds, "pods": args.pods, "adapters": args.adapters,
            "latency_ms": args.latency_ms, "concurrency": args.concurrency,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=4)
    p.add_argument("--adapters", type=int, default=40)
    p.add_argument("--latency-ms", type=float, default=100)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
