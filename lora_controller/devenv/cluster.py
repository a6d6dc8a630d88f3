"""A namespace of simulated vLLM pods registered as real Pods, and the LoraAdapters applied to it.

Each pod is a `SimulatedPod` of a shared `SimulatedFleet` on a loopback port and a Pod object in
the API server with the matching vLLM command line (`simpods.pod_manifest`); as no kubelet runs,
its status (Running, Ready, podIP, restart count) is written the way a kubelet would. End-to-end
tests, benchmarks, the demo and `lora-controller dev sim-pods` all build their pods here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.simpods import (
    MEMORY_ANNOTATION,
    delete_pod_now,
    pod_manifest,
    set_pod_status,
)
from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.resources import LORA_ADAPTERS, NAMESPACES, PODS
from lora_controller.simulator.config import PodConfig
from lora_controller.simulator.fleet import SimulatedFleet
from lora_controller.simulator.pod import SimulatedPod
from lora_controller.vllm.serve_args import parse_lora_module

JSON = dict[str, Any]
MODEL = "tiny-llama"


@dataclass
class SimPod:
    """A simulated vLLM server and the name of its Pod."""

    name: str
    sim: SimulatedPod
    port: int
    restarts: int = 0


def local_spec(path: Path, **extra: Any) -> JSON:
    """A LoraAdapter spec for local adapters under `path` on pods labelled lora-enabled=true;
    `extra` merges into the top-level fields (dicts are merged, other values replace)."""
    spec: JSON = {
        "baseModel": MODEL,
        "adapterSource": {"type": "local", "repository": str(path)},
        "deploymentConfig": {"podSelector": {"matchLabels": {"lora-enabled": "true"}}},
    }
    for key, value in extra.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


async def create_namespace(kube: KubeClient, name: str) -> bool:
    """Create namespace `name`; False when it already exists."""
    try:
        await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except ApiError as exc:
        if exc.conflict:
            return False
        raise
    return True


def _ready(item: JSON) -> bool:
    status = item.get("status") or {}
    return bool(status.get("phase") == "Ready" and status.get("observedGeneration") == item["metadata"]["generation"])


def check_truthful(status: JSON) -> None:
    """What every status the controller writes must satisfy: counts agree with the lists (unless
    they were cut), a Ready resource lists no failure, a phase is one the CRD names. Every status
    an end-to-end test reads goes through this."""
    if not status:
        return
    if not status.get("truncated"):
        assert status.get("loadedCount", 0) == len(status.get("loadedAdapters", [])), status
        assert status.get("failedCount", 0) == len(status.get("failedAdapters", [])), status
    assert status.get("loadedCount", 0) <= status.get("desiredCount", 0) or not status.get(
        "desiredCount"), status
    assert status.get("phase") in (None, "Pending", "Loading", "Ready", "Partial", "Failed"), status
    if status.get("phase") == "Ready":
        assert not status.get("failedAdapters"), status
    confirmed = {a for p in status.get("podAssignments", []) for a in p.get("adapters", [])}
    if not status.get("truncated"):
        assert confirmed == set(status.get("loadedAdapters", [])), status


@dataclass
class Cluster:
    """One namespace with simulated vLLM pods."""

    namespace: str
    kube: KubeClient
    fleet: SimulatedFleet
    pods: dict[str, SimPod] = field(default_factory=dict)

    # -- pods -----------------------------------------------------------------------------------
    async def add_pod(
        self, name: str, *, model: str = MODEL, labels: dict[str, str] | None = None,
        max_loras: int = 2, max_cpu_loras: int = 4, max_lora_rank: int = 16,
        memory: str | None = None, node: str | None = None, load_latency_ms: float = 0.0,
        lora_modules: tuple[str, ...] = (), ready: bool = True, scheduler_name: str | None = None,
    ) -> SimPod:
        """Start a simulated vLLM and register it as Pod `name` (labels app=vllm, lora-enabled, model)."""
        config = PodConfig(model=model, max_loras=max_loras, max_cpu_loras=max_cpu_loras,
                           max_lora_rank=max_lora_rank,
                           lora_modules=tuple(parse_lora_module(m) for m in lora_modules))
        config.faults.load_latency_ms = load_latency_ms
        sim = await self.fleet.add_pod(config, host="127.0.0.1", port=0)
        pod = SimPod(name, sim, sim.port)
        self.pods[name] = pod
        annotations = {MEMORY_ANNOTATION: memory} if memory else {}
        all_labels = {"app": "vllm", "lora-enabled": "true", "model": model, **(labels or {})}
        await self.kube.create(PODS, pod_manifest(
            name, port=sim.port, model=model, labels=all_labels, max_loras=max_loras,
            max_cpu_loras=max_cpu_loras, max_lora_rank=max_lora_rank, node=node,
            annotations=annotations, lora_modules=lora_modules, scheduler_name=scheduler_name),
            namespace=self.namespace)
        await self.set_status(name, ready=ready)
        return pod

    async def add_pods(
        self, names: Sequence[str], *, labels: Callable[[int], dict[str, str]] | None = None,
        nodes: Callable[[int], str] | None = None, concurrency: int = 32, **options: Any,
    ) -> list[SimPod]:
        """`add_pod` for each name, `concurrency` at a time; `labels(i)` and `nodes(i)` per pod."""
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int, name: str) -> SimPod:
            async with sem:
                return await self.add_pod(name, labels=labels(i) if labels else None,
                                          node=nodes(i) if nodes else None, **options)

        return list(await asyncio.gather(*(one(i, name) for i, name in enumerate(names))))

    async def set_status(self, name: str, *, ready: bool = True) -> None:
        """Write Pod `name`'s status as the kubelet would, with its restart count."""
        await set_pod_status(self.kube, self.namespace, name, ready=ready, restarts=self.pods[name].restarts)

    async def restart_pod(self, name: str) -> None:
        """The vLLM container restarts: it forgets runtime-loaded adapters, the kubelet counts it."""
        await self.restart_vllm(name)
        await self.set_status(name)

    async def restart_vllm(self, name: str) -> None:
        """The first half of `restart_pod`: vLLM restarted, the kubelet has not reported it yet."""
        pod = self.pods[name]
        await pod.sim.restart()
        pod.restarts += 1

    async def delete_pod(self, name: str) -> None:
        """Delete Pod `name` at once and stop its simulated vLLM."""
        pod = self.pods.pop(name)
        await delete_pod_now(self.kube, self.namespace, name)
        await self.fleet.remove_pod(pod.sim)

    async def delete_pods(self) -> None:
        """Delete every pod this cluster added."""
        for name in list(self.pods):
            await self.delete_pod(name)

    def loaded(self, name: str) -> dict[str, str]:
        """What the simulated vLLM of a pod has registered: adapter name -> path."""
        return {a.name: a.path for a in self.pods[name].sim.adapters.values()}

    def successful_loads(self, name: str) -> list[str]:
        """Adapter names of every successful (not in-place) load on pod `name`, in order."""
        return [e.name for e in self.pods[name].sim.load_log
                if e.action == "load" and e.status == 200 and not e.inplace]

    def assert_loaded_once(self, name: str) -> None:
        """No adapter was loaded twice on pod `name` (fails listing the loads)."""
        loads = self.successful_loads(name)
        assert sorted(loads) == sorted(set(loads)), f"an adapter was loaded twice on {name}: {loads}"

    def assert_every_pod_serves_once(self, names: Sequence[str]) -> None:
        """Every pod serves exactly `names`, each loaded on it once."""
        for pod in self.pods:
            assert set(self.loaded(pod)) == set(names), (pod, sorted(self.loaded(pod)))
            self.assert_loaded_once(pod)

    # -- LoraAdapters ---------------------------------------------------------------------------
    async def apply(self, name: str, spec: JSON) -> JSON:
        """Create LoraAdapter `name`, or replace its spec if it exists (what `kubectl apply` does).

        A replace races the controller's status writes (each changes the resourceVersion): on a
        conflict it reads the object again and retries, as kubectl does."""
        body = {"apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": name}, "spec": spec}
        try:
            return await self.kube.create(LORA_ADAPTERS, body, namespace=self.namespace)
        except ApiError as exc:
            if not exc.conflict:
                raise
        conflicts = 0
        while True:
            current = await self.kube.get(LORA_ADAPTERS, name, namespace=self.namespace)
            current["spec"] = spec
            try:
                return await self.kube.replace(LORA_ADAPTERS, name, current, namespace=self.namespace)
            except ApiError as exc:
                conflicts += 1
                if not exc.conflict or conflicts == 10:
                    raise

    async def cr(self, name: str) -> JSON:
        """LoraAdapter `name` as stored."""
        return await self.kube.get(LORA_ADAPTERS, name, namespace=self.namespace)

    async def status(self, name: str) -> JSON:
        """LoraAdapter `name`'s status ({} before the first write), checked to be truthful."""
        status: JSON = (await self.cr(name)).get("status") or {}
        check_truthful(status)
        return status

    async def wait_status(self, name: str, check: Callable[[JSON], bool], *,
                          timeout: float = 30.0, what: str = "") -> JSON:
        """Poll LoraAdapter `name`'s status until `check` holds; fails showing the last status."""
        return await wait_for_status(self.status, name, check, timeout=timeout, what=what)


async def wait_for_status(read: Callable[[str], Awaitable[JSON]], name: str,
                          check: Callable[[JSON], bool], *, timeout: float, what: str = "",
                          interval: float = 0.1, context: Callable[[], str] = lambda: "") -> JSON:
    """Poll `read(name)` until `check` holds; fails showing the last status (and `context()`)."""
    deadline = time.monotonic() + timeout
    status: JSON = {}
    while time.monotonic() < deadline:
        try:
            status = await read(name)
        except ApiError:
            status = {}
        if check(status):
            return status
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or 'status'} of {name}: "
                         f"{json.dumps(status, indent=1)[:3000]}{context()}")


async def list_lora_adapters(kube: KubeClient, namespace: str | None = None) -> list[JSON]:
    """Every LoraAdapter (of `namespace`, or of all), 500 a page."""
    items: list[JSON] = []
    token = None
    while True:
        page = await kube.list(LORA_ADAPTERS, namespace=namespace, limit=500, continue_token=token)
        items.extend(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            return items


async def wait_all_ready(kube: KubeClient, expected: int, *, namespace: str | None = None,
                         timeout: float = 600, poll: float = 0.05) -> float:
    """Until `expected` LoraAdapters are Ready for their generation; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        items = await list_lora_adapters(kube, namespace)
        if sum(1 for i in items if _ready(i)) >= expected:
            return time.monotonic() - started
        await asyncio.sleep(poll)
    raise RuntimeError(f"not Ready within {timeout}s")
