"""Benchmark: real vLLM (the CPU build) as the controller's pods, and the simulator beside it.

Three real vLLM 0.32 servers (tiny Llama of the conformance fixtures, `--max-loras 2
--max-cpu-loras 8 --max-lora-rank 8`) start in parallel and are registered as Pods of a local
control plane. Measured:
- `load_p50_ms`, `load_p99_ms`: real `POST /v1/load_lora_adapter` of the fixture adapters
  (lora-a..e), one at a time on an idle server, timed by the caller; a server's first load is
  cold (one-time set-up) and reported apart as `load_first_ms`. `sim_load_p50_ms`,
  `sim_load_p99_ms`, `sim_load_first_ms`: the same requests against a simulated pod with its
  default settings.
- `ready_s`: one LoraAdapter of 8 adapters x 2 replicas, from its create to Ready for its
  generation, the controller running as its own process; `lower_bound_s` =
  ceil(loads per pod / load concurrency) x load_p50 (no controller can be faster, even if vLLM
  loaded in parallel); `ratio` = ready_s / lower_bound_s.
- `vllm_rss_mib`: resident memory per server (API server + engine core + its worker process),
  after the loads; `vllm_pss_mib` the same with shared pages divided among their users.
Last line: one JSON object. Needs $LORA_VLLM_PYTHON (hack/vllm-real) and the control-plane binaries
(hack/build-tools).

    python bench/real_vllm.py [--servers 3] [--adapters 8] [--replicas 2] [--rounds 10] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import start_controller

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.cluster import create_namespace, wait_all_ready
from lora_controller.devenv.controlplane import REPO
from lora_controller.devenv.local import LocalCluster
from lora_controller.devenv.realvllm import RealVllmPods, RealVllmServer, ServerConfig, vllm_python
from lora_controller.kube.resources import LORA_ADAPTERS, ResourceKind
from lora_controller.simulator.config import PodConfig
from lora_controller.simulator.fleet import SimulatedFleet

FIXTURE_ADAPTERS = ("lora-a", "lora-b", "lora-c", "lora-d", "lora-e")
TIMEOUT = aiohttp.ClientTimeout(total=60)


def build_fixtures(root: Path) -> Path:
    """The conformance fixtures (numpy backend), under /tmp as the recordings had them."""
    script = REPO / "tests" / "vllm" / "conformance" / "make_fixtures.py"
    subprocess.run([sys.executable, str(script), str(root)], check=True, capture_output=True, timeout=300)
    return root


def bench_adapters(fixtures: Path, count: int) -> Path:
    """`count` adapter folders copied from the fixture adapters in turn."""
    out = fixtures.parent / "bench-adapters"
    for i in range(count):
        shutil.copytree(fixtures / FIXTURE_ADAPTERS[i % len(FIXTURE_ADAPTERS)], out / f"bench-{i}")
    return out


async def load_latencies(url: str, fixtures: Path, rounds: int) -> tuple[float, list[float]]:
    """Milliseconds of the server's first load (cold: apart), then of each load of the fixture
    adapters (unloaded again after every round)."""
    times = []
    async with aiohttp.ClientSession() as s:
        for r in range(-1, rounds):
            for adapter in FIXTURE_ADAPTERS:
                body = {"lora_name": f"lat-{r}-{adapter}", "lora_path": str(fixtures / adapter)}
                started = time.perf_counter()
                async with s.post(url + "/v1/load_lora_adapter", json=body, timeout=TIMEOUT) as resp:
                    await resp.read()
                    assert resp.status == 200, (resp.status, await resp.text())
                times.append((time.perf_counter() - started) * 1000)
            for adapter in FIXTURE_ADAPTERS:
                async with s.post(url + "/v1/unload_lora_adapter", timeout=TIMEOUT,
                                  json={"lora_name": f"lat-{r}-{adapter}"}) as resp:
                    assert resp.status == 200, await resp.text()
    return times[0], times[len(FIXTURE_ADAPTERS):]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def memory_mib(server: RealVllmServer, field: str) -> float:
    """Sum over the server's processes of VmRSS (/proc/PID/status) or Pss (smaps_rollup)."""
    total = 0
    for pid in server.pids():
        source = f"/proc/{pid}/status" if field == "VmRSS" else f"/proc/{pid}/smaps_rollup"
        try:
            with open(source) as f:
                total += next((int(line.split()[1]) for line in f if line.startswith(field + ":")), 0)
        except OSError:
            pass
    return round(total / 1024, 1)


async def simulated_latencies(model_dir: str, fixtures: Path, rounds: int) -> tuple[float, list[float]]:
    async with SimulatedFleet() as fleet:
        pod = await fleet.add_pod(PodConfig(model=model_dir, max_loras=2, max_cpu_loras=8,
                                            max_lora_rank=8), host="127.0.0.1", port=0)
        return await load_latencies(f"http://127.0.0.1:{pod.port}", fixtures, rounds)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    python = vllm_python()
    async with LocalCluster() as world:
        fixtures = build_fixtures(Path(world.workdir) / "fixtures")
        adapters = bench_adapters(fixtures, args.adapters)
        await create_namespace(world.kube, "bench")
        pods = RealVllmPods(world.kube, "bench")
        config = ServerConfig(model_dir=str(fixtures / "tiny-llama"), max_loras=2, max_cpu_loras=8,
                              max_lora_rank=8)
        started = time.monotonic()
        try:
            await pods.add(python, [f"vllm-{i}" for i in range(args.servers)], config,
                           log_dir=world.workdir / "vllm-logs")
            servers_ready_s = time.monotonic() - started
            measured = [await load_latencies(p.server.url, fixtures, args.rounds)
                        for p in pods.pods.values()]
            real = [t for _, times in measured for t in times]
            sim_first, sim = await simulated_latencies(config.model_dir, fixtures, args.rounds)
            await start_controller(world, "--namespace", "bench", "--no-leader-elect",
                                   "--poll-interval", "5", "--load-concurrency", str(args.concurrency))
            await asyncio.sleep(1.0)  # let the controller's first poll of every pod finish
            await world.kube.create(*_resource(adapters, args.replicas), namespace="bench")
            ready_s = await wait_all_ready(world.kube, 1, namespace="bench", timeout=600, poll=0.02)
            rss = [memory_mib(p.server, "VmRSS") for p in pods.pods.values()]
            pss = [memory_mib(p.server, "Pss") for p in pods.pods.values()]
        finally:
            await pods.close()
    p50 = statistics.median(real)
    per_pod = math.ceil(args.adapters * args.replicas / args.servers)
    lower = math.ceil(per_pod / args.concurrency) * p50 / 1000
    return {
        "load_p50_ms": round(p50, 2), "load_p99_ms": round(percentile(real, 0.99), 2),
        "ready_s": round(ready_s, 3), "lower_bound_s": round(lower, 4),
        "ratio": round(ready_s / lower, 1), "vllm_rss_mib": rss, "vllm_pss_mib": pss,
        "sim_load_p50_ms": round(statistics.median(sim), 2),
        "sim_load_p99_ms": round(percentile(sim, 0.99), 2),
        "load_first_ms": [round(first, 1) for first, _ in measured],
        "sim_load_first_ms": round(sim_first, 1),
        "loads_timed": len(real), "servers_ready_s": round(servers_ready_s, 1),
        "servers": args.servers, "adapters": args.adapters, "replicas": args.replicas,
        "concurrency": args.concurrency,
    }


def _resource(adapters: Path, replicas: int) -> tuple[ResourceKind, dict[str, Any]]:
    return LORA_ADAPTERS, {
        "apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": "bench"},
        "spec": {"baseModel": "tiny-llama",
                 "adapterSource": {"type": "local", "repository": str(adapters)},
                 "deploymentConfig": {"replicas": replicas,
                                      "podSelector": {"matchLabels": {"lora-enabled": "true"}}}}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--adapters", type=int, default=8)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10, help="loads of the 5 fixture adapters per server")
    p.add_argument("--concurrency", type=int, default=4, help="the controller's --load-concurrency")
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
