"""Benchmark: convergence time of one LoraAdapter against its lower bound.

One resource selects 200 local adapters, 2 replicas each, onto 20 simulated vLLM pods whose loads take
a fixed latency; the controller loads with its per-pod concurrency. The lower bound is
(loads per pod / concurrency) x latency. Time is measured from the create (what `kubectl apply`
does) to the resource's status saying Ready for its generation, seen through a watch. In the same
run, `floor_s` is the time the same loads take when the controller's vLLM client sends them alone
from its own process to pods of their own (bench/_direct_loads.py): the part of `ratio` that is the
client's and the simulated pods' (HTTP, adapter files), not the controller's. Last line: one JSON
object with `ready_s`, `lower_bound_s`, `ratio`, `floor_s`, `floor_ratio` (and the parameters).

    python bench/convergence.py [--adapters 200] [--pods 20] [--replicas 2] [--latency-ms 200] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path

from _common import add_pods, start_controller, watch_until_ready

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.local import LocalCluster
from lora_controller.simulator.config import PodConfig


async def floor_s(world: LocalCluster, root: Path, names: list[str],
                  args: argparse.Namespace) -> float:
    """The same loads per pod, sent by the vLLM client alone from its own process to pods of
    their own (not Pods: the controller never sees them): the harness's floor."""
    sims = [await world.fleet.add_pod(_config(args), host="127.0.0.1") for _ in range(args.pods)]
    per_pod = math.ceil(args.adapters * args.replicas / args.pods)
    job = {"ports": [s.port for s in sims], "concurrency": args.concurrency,
           "paths": [[str(root / names[(i * per_pod + k) % len(names)]) for k in range(per_pod)]
                     for i in range(args.pods)]}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("_direct_loads.py")),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(json.dumps(job).encode())
    for sim in sims:
        await world.fleet.remove_pod(sim)
    return float(json.loads(out.decode().strip().splitlines()[-1])["seconds"])


def _config(args: argparse.Namespace) -> PodConfig:
    config = PodConfig(model="tiny-llama", max_loras=4, max_cpu_loras=64)
    config.faults.load_latency_ms = args.latency_ms
    return config


async def run(args: argparse.Namespace) -> dict[str, float | int]:
    async with LocalCluster() as world:
        ns = "bench"
        cluster = await world.namespace(ns)
        names = [f"adapter-{i:04d}" for i in range(args.adapters)]
        root = write_adapters(world.workdir / "adapters", names, shared_weights=True)
        floor = await floor_s(world, root, names, args)
        await add_pods(cluster, args.pods, max_loras=4, max_cpu_loras=64, load_latency_ms=args.latency_ms)
        await start_controller(world, "--namespace", ns, "--no-leader-elect", "--poll-interval", "5",
                               *args.controller_args, "--load-concurrency", str(args.concurrency))
        await asyncio.sleep(1.0)  # let the controller's first poll of every pod finish
        waiting = asyncio.create_task(watch_until_ready(world.kube, 1, namespace=ns))
        await asyncio.sleep(0.2)  # the watch is open
        started = time.monotonic()
        await cluster.apply("bench", {
            "baseModel": "tiny-llama",
            "adapterSource": {"type": "local", "repository": str(root), "maxAdapters": args.adapters},
            "deploymentConfig": {"replicas": args.replicas,
                                 "podSelector": {"matchLabels": {"lora-enabled": "true"}}},
        })
        applied = time.monotonic()
        await waiting
        done = time.monotonic()
        ready_s, elapsed = done - applied, done - started
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
            "floor_s": round(floor, 3), "floor_ratio": round(floor / lower, 3),
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
