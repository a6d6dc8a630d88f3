"""What the controller benchmarks share beyond the development harness (lora_controller.devenv):
pods named and spread as in a cluster, the controller started quiet, and the figures read from
/proc and from the API server's own metrics."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from lora_controller.devenv.cluster import Cluster, SimPod
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.local import LocalCluster
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import LORA_ADAPTERS


async def add_pods(cluster: Cluster, count: int, *, labels: Callable[[int], dict[str, str]] | None = None,
                   max_loras: int = 4, max_cpu_loras: int = 32, **options: Any) -> list[SimPod]:
    """`count` simulated pods vllm-0000, vllm-0001, ... on 50 nodes."""
    return await cluster.add_pods([f"vllm-{i:04d}" for i in range(count)], labels=labels,
                                  nodes=lambda i: f"node-{i % 50}", max_loras=max_loras,
                                  max_cpu_loras=max_cpu_loras, **options)


async def start_controller(world: LocalCluster, *args: str, timeout: float = 120) -> ControllerProcess:
    """The controller with `args` only (no test defaults), logging warnings; returns once ready."""
    ctl = world.start_controller(*args, poll_interval=None, resync=None, log_level="warning")
    await ctl.wait_ready(timeout=timeout)
    return ctl


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS in MiB) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def _ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return bool(status.get("phase") == "Ready"
                and status.get("observedGeneration") == obj["metadata"].get("generation"))


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


async def watch_until_ready(kube: KubeClient, expected: int, *, namespace: str | None,
                            timeout: float = 600) -> float:
    """Seconds until `expected` LoraAdapters of the namespace (None: all) are Ready for their generation,
    seen through a watch: polling the list every few milliseconds would take the event loop
    that also runs the simulated pods, and slow the very loads being timed."""
    started = time.monotonic()
    page = await kube.list(LORA_ADAPTERS, namespace=namespace, timeout=120)
    ready = {_key(o) for o in page["items"] if _ready(o)}
    version = page["metadata"]["resourceVersion"]
    async with asyncio.timeout(timeout):
        while len(ready) < expected:
            async for event in kube.watch(LORA_ADAPTERS, namespace=namespace,
                                          resource_version=version, timeout_seconds=60):
                meta = event.object.get("metadata") or {}
                version = meta.get("resourceVersion", version)
                if event.type in ("ADDED", "MODIFIED") and _ready(event.object):
                    ready.add(_key(event.object))
                elif event.type in ("ADDED", "MODIFIED", "DELETED"):
                    ready.discard(_key(event.object))
                if len(ready) >= expected:
                    break
    return time.monotonic() - started


async def apiserver_requests(kube: KubeClient) -> dict[tuple[str, str], float]:
    """apiserver_request_total summed by (verb, resource), read from the API server itself."""
    text = await kube.api.call_api(
        "/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False,
        _request_timeout=30)
    body = (await text.read()).decode()
    text.release()
    out: dict[tuple[str, str], float] = {}
    for line in body.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_part, value = line.rsplit(" ", 1)
        labels = dict(part.split("=", 1) for part in labels_part[len("apiserver_request_total{"):-1]
                      .split(",") if "=" in part)
        key = (labels.get("verb", "").strip('"'), labels.get("resource", "").strip('"'))
        out[key] = out.get(key, 0.0) + float(value)
    return out
