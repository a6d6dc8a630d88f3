"""Benchmark: scale. 1,000 LoraAdapters with 10,000 adapters on 1,000 simulated vLLM pods (one
simulator process serves them all), spread over 10 namespaces.

Each namespace has 100 pods in 10 label groups and 100 resources; resource i selects group i % 10
and declares 10 local adapters (1 replica each). Measured: time from the first create to every
resource Ready, the controller's RSS at the end, and the requests the controller sent to the API
server per resource (its own `lora_controller_kube_requests_total`, watches counted once). Last
line: one JSON object with `ready_s`, `rss_mib`, `api_requests_per_cr`.

`--size xl`: 20 namespaces of 500 resources and 250 pods (10,000 resources, 100,000 adapters, 5,000
pods, 20 loads per pod), the pods served by `--sim-hosts` processes of their own (bench/_xl.py),
each load taking `--latency-ms`. It adds `lower_bound_s` = ceil(loads per pod / --concurrency) x
latency and `ratio` = ready_s / lower_bound_s, and the API server's own request counts and CPU
seconds for the run (to tell when it, not the controller, is the limit).

    python bench/scale.py [--namespaces 10] [--crs-per-namespace 100] [--pods-per-namespace 100] [--adapters-per-cr 10]
    python bench/scale.py --size xl [--sim-hosts 5] [--latency-ms 2000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time

import aiohttp
from _common import add_pods, apiserver_requests, proc_stats, start_controller, watch_until_ready
from _xl import SimHosts, register

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import wait_all_ready
from lora_controller.devenv.local import LocalCluster
from lora_controller.kube.client import KubeClient


async def controller_requests(url: str, *, by_code: bool = False) -> dict[str, float]:
    """The controller's own count of its API server requests, by verb (or verb and status)."""
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("lora_controller_kube_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            key = labels.split('verb="', 1)[1].split('"', 1)[0]
            if by_code:
                key += " " + labels.split('code="', 1)[1].split('"', 1)[0]
            out[key] = out.get(key, 0.0) + float(value)
    return out


async def event_reasons(kube: KubeClient) -> dict[str, int]:
    """Events the controller recorded, by reason (what its POSTs were)."""
    page = await kube.request("GET", "/apis/events.k8s.io/v1/events", query={"limit": 100000})
    out: dict[str, int] = {}
    for e in page.get("items") or []:
        out[e.get("reason", "")] = out.get(e.get("reason", ""), 0) + 1
    return dict(sorted(out.items()))


async def build(world: LocalCluster, args: argparse.Namespace) -> tuple[float, float]:
    """Pods, adapters, the controller, and every resource Ready: returns (setup_s, ready_s)."""
    started_setup = time.monotonic()
    namespaces = [f"scale-{n:02d}" for n in range(args.namespaces)]
    for ns in namespaces:
        cluster = await world.namespace(ns)
        await add_pods(cluster, args.pods_per_namespace, max_cpu_loras=16,
                       labels=lambda i: {"group": f"g{i % 10}"})
        for c in range(args.crs_per_namespace):
            write_adapters(world.workdir / "adapters" / ns / f"cr-{c:03d}",
                           [f"{ns}-c{c:03d}-a{a:02d}" for a in range(args.adapters_per_cr)],
                           shared_weights=True)
    setup_s = time.monotonic() - started_setup
    await start_controller(world, "--poll-interval", "30", "--no-leader-elect", "--workers", "4")
    started = time.monotonic()
    sem = asyncio.Semaphore(16)

    async def create(ns: str, c: int) -> None:
        async with sem:
            await world.clusters[ns].apply(f"cr-{c:03d}", {
                "baseModel": "tiny-llama",
                "adapterSource": {"type": "local", "repository": str(
                    world.workdir / "adapters" / ns / f"cr-{c:03d}")},
                "deploymentConfig": {"replicas": 1, "podSelector": {"matchLabels": {
                    "lora-enabled": "true", "group": f"g{c % 10}"}}}})

    await asyncio.gather(*(create(ns, c) for ns in namespaces
                           for c in range(args.crs_per_namespace)))
    total = args.namespaces * args.crs_per_namespace
    await wait_all_ready(world.kube, total, timeout=1800, poll=1.0)
    return setup_s, time.monotonic() - started


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with LocalCluster() as world:
        setup_s, ready_s = await build(world, args)
        total = args.namespaces * args.crs_per_namespace
        assert world.controller is not None
        _, rss = proc_stats(world.controller.pid)
        requests = await controller_requests(world.controller.url)
        by_code = await controller_requests(world.controller.url, by_code=True)
        loads = sum(1 for sim in world.sims.values() for e in sim.load_log
                    if e.action == "load" and e.status == 200)
        return {
            "ready_s": round(ready_s, 2),
            "rss_mib": round(rss, 1),
            "api_requests_per_cr": round(sum(requests.values()) / total, 2),
            "api_requests_by_verb": requests, "api_requests_by_code": by_code,
            "events_by_reason": await event_reasons(world.kube),
            "crs": total, "adapters": total * args.adapters_per_cr,
            "pods": args.namespaces * args.pods_per_namespace, "loads": loads,
            "setup_s": round(setup_s, 1),
        }


async def run_xl(args: argparse.Namespace) -> dict[str, object]:
    """The xl size: pods in processes of their own (bench/_xl.py), loads taking --latency-ms."""
    namespaces = [f"scale-{n:02d}" for n in range(args.namespaces)]
    per_ns, total = args.pods_per_namespace, args.namespaces * args.crs_per_namespace
    per_pod = math.ceil(args.crs_per_namespace * args.adapters_per_cr / per_ns)
    async with LocalCluster() as world, SimHosts(
            args.namespaces * per_ns, args.sim_hosts, max_loras=4, max_cpu_loras=per_pod + 8,
            load_latency_ms=args.latency_ms) as hosts:
        started_setup = time.monotonic()
        for n, ns in enumerate(namespaces):
            await world.namespace(ns)
            await register(world.kube, ns, [f"vllm-{i:04d}" for i in range(per_ns)],
                           hosts.ports[n * per_ns:(n + 1) * per_ns],
                           labels=lambda i: {"group": f"g{i % 10}"}, max_loras=4,
                           max_cpu_loras=per_pod + 8)
            await asyncio.to_thread(_write_adapters, world, ns, args)
        setup_s = time.monotonic() - started_setup
        await start_controller(world, "--poll-interval", "30", "--no-leader-elect", "--workers",
                               "4", "--load-concurrency", str(args.concurrency), timeout=300)
        before = await apiserver_requests(world.kube)
        started = time.monotonic()
        waiting = asyncio.create_task(watch_until_ready(world.kube, total, namespace=None,
                                                        timeout=7200))
        await _create_all(world, namespaces, args)
        await waiting
        ready_s = time.monotonic() - started
        assert world.controller is not None
        _, rss = proc_stats(world.controller.pid)
        requests = await controller_requests(world.controller.url)
        after = await apiserver_requests(world.kube)
        server_cpu = proc_stats(world.cp._require_state().apiserver_pid or 0)[0]
    lower = math.ceil(per_pod / args.concurrency) * args.latency_ms / 1000
    return {
        "ready_s": round(ready_s, 1), "lower_bound_s": round(lower, 1),
        "ratio": round(ready_s / lower, 2), "rss_mib": round(rss, 1),
        "api_requests_per_cr": round(sum(requests.values()) / total, 2),
        "api_requests_by_verb": requests,
        "apiserver_requests_in_run": _by_verb(before, after), "apiserver_cpu_s": round(server_cpu, 1),
        "crs": total, "adapters": total * args.adapters_per_cr,
        "pods": args.namespaces * per_ns, "loads": hosts.loads, "loads_per_pod": per_pod,
        "latency_ms": args.latency_ms, "concurrency": args.concurrency,
        "setup_s": round(setup_s, 1),
    }


def _write_adapters(world: LocalCluster, ns: str, args: argparse.Namespace) -> None:
    for c in range(args.crs_per_namespace):
        write_adapters(world.workdir / "adapters" / ns / f"cr-{c:03d}",
                       [f"{ns}-c{c:03d}-a{a:02d}" for a in range(args.adapters_per_cr)],
                       shared_weights=True)


async def _create_all(world: LocalCluster, namespaces: list[str], args: argparse.Namespace) -> None:
    sem = asyncio.Semaphore(16)

    async def create(ns: str, c: int) -> None:
        async with sem:
            await world.clusters[ns].apply(f"cr-{c:03d}", {
                "baseModel": "tiny-llama",
                "adapterSource": {"type": "local", "repository": str(
                    world.workdir / "adapters" / ns / f"cr-{c:03d}")},
                "deploymentConfig": {"replicas": 1, "podSelector": {"matchLabels": {
                    "lora-enabled": "true", "group": f"g{c % 10}"}}}})

    await asyncio.gather(*(create(ns, c) for ns in namespaces
                           for c in range(args.crs_per_namespace)))


def _by_verb(before: dict[tuple[str, str], float],
             after: dict[tuple[str, str], float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for (verb, _), value in after.items():
        out[verb] = out.get(verb, 0.0) + value
    for (verb, _), value in before.items():
        out[verb] = out.get(verb, 0.0) - value
    return {k: v for k, v in sorted(out.items()) if v}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--crs-per-namespace", type=int, default=100)
    p.add_argument("--pods-per-namespace", type=int, default=100)
    p.add_argument("--adapters-per-cr", type=int, default=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--size", choices=["default", "xl"], default="default",
                   help="xl: 20 namespaces of 500 resources and 250 pods (10,000 / 100,000 / 5,000)")
    p.add_argument("--sim-hosts", type=int, default=5, help="xl: processes serving the pods")
    p.add_argument("--latency-ms", type=float, default=2000, help="xl: each simulated load's time")
    p.add_argument("--concurrency", type=int, default=4, help="xl: loads at once per pod")
    args = p.parse_args()
    if args.size == "xl":
        args.namespaces, args.crs_per_namespace, args.pods_per_namespace = 20, 500, 250
        print(json.dumps(asyncio.run(run_xl(args))))
    else:
        print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
