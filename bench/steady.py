"""Benchmark: steady state. 100 Ready LoraAdapters for 60 s: writes the controller makes to the API
server (read from the API server's own `apiserver_request_total`), and the controller's CPU and RSS.

Writes are every request with a mutating verb (POST, PUT, PATCH, DELETE, APPLY). Lease writes are
counted apart (`lease_writes_per_min`): they are the API server's own identity leases plus, when
leader election is on, the leader's renewals, inherent to electing a leader. Last line: one JSON object
with `writes_per_min`, `cpu_percent`, `rss_mib` (and more).

    python bench/steady.py [--crs 100] [--pods 10] [--seconds 60] [--leader-elect]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from _common import add_pods, apiserver_requests, proc_stats, start_controller

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import wait_all_ready
from lora_controller.devenv.local import LocalCluster

WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"}


def writes(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for (verb, resource), value in after.items():
        if verb.upper() not in WRITE_VERBS:
            continue
        delta = value - before.get((verb, resource), 0.0)
        if delta:
            out[f"{verb} {resource}"] = delta
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with LocalCluster() as world:
        ns = "bench"
        cluster = await world.namespace(ns)
        await add_pods(cluster, args.pods, max_cpu_loras=4 * args.crs)
        for i in range(args.crs):
            write_adapters(world.workdir / "adapters" / f"cr-{i:03d}", [f"cr{i:03d}-a", f"cr{i:03d}-b"],
                           shared_weights=True)
        ctl = await start_controller(world, "--namespace", ns, "--poll-interval", "10",
                                     *([] if args.leader_elect else ["--no-leader-elect"]))
        for i in range(args.crs):
            await cluster.apply(f"cr-{i:03d}", {
                "baseModel": "tiny-llama",
                "adapterSource": {"type": "local",
                                  "repository": str(world.workdir / "adapters" / f"cr-{i:03d}")},
                "deploymentConfig": {"replicas": 2,
                                     "podSelector": {"matchLabels": {"lora-enabled": "true"}}}})
        await wait_all_ready(world.kube, args.crs, namespace=ns, timeout=600)
        await asyncio.sleep(5)  # let the last status writes and events settle
        pid = ctl.pid
        before = await apiserver_requests(world.kube)
        cpu0, _ = proc_stats(pid)
        await asyncio.sleep(args.seconds)
        cpu1, rss = proc_stats(pid)
        after = await apiserver_requests(world.kube)
        w = writes(before, after)
        lease = sum(v for k, v in w.items() if k.endswith(" leases"))
        other = {k: v for k, v in w.items() if not k.endswith(" leases")}
        minutes = args.seconds / 60
        return {
            "writes_per_min": round(sum(other.values()) / minutes, 2),
            "lease_writes_per_min": round(lease / minutes, 2),
            "writes_by_kind": other,
            "cpu_percent": round(100 * (cpu1 - cpu0) / args.seconds, 2),
            "rss_mib": round(rss, 1),
            "crs": args.crs, "pods": args.pods, "seconds": args.seconds,
            "leader_elect": args.leader_elect,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crs", type=int, default=100)
    p.add_argument("--pods", type=int, default=10)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--leader-elect", action="store_true")
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
