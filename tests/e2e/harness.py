"""End-to-end harness: simulated vLLM pods registered as real Pods, and the controller as a process.

Pods are created in the real API server with a vLLM command line; as no kubelet runs, the harness
writes their status (Running, Ready, podIP, restart count) the way a kubelet would. Each pod's
vLLM is a simulator on a loopback port, named by the pod's `http` container port.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.controlplane import ControlPlane, free_port
from lora_controller.devenv.simpods import delete_pod_now, pod_manifest, set_pod_status
from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.resources import LORA_ADAPTERS, PODS
from lora_controller.simulator.config import PodConfig
from lora_controller.simulator.fleet import SimulatedFleet
from lora_controller.simulator.pod import SimulatedPod

JSON = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class SimPod:
    name: str
    sim: SimulatedPod
    port: int
    restarts: int = 0


@dataclass
class Cluster:
    """One test namespace with simulated vLLM pods."""

    cp: ControlPlane
    namespace: str
    kube: KubeClient
    fleet: SimulatedFleet
    pods: dict[str, SimPod] = field(default_factory=dict)

    async def add_pod(
        self, name: str, *, model: str = "tiny-llama", labels: dict[str, str] | None = None,
        max_loras: int = 2, max_cpu_loras: int = 4, max_lora_rank: int = 16,
        memory: str | None = None, node: str | None = None, load_latency_ms: float = 0.0,
        lora_modules: tuple[str, ...] = (), ready: bool = True,
    ) -> SimPod:
        from lora_controller.vllm.serve_args import parse_lora_module

        config = PodConfig(model=model, max_loras=max_loras, max_cpu_loras=max_cpu_loras,
                           max_lora_rank=max_lora_rank,
                           lora_modules=tuple(parse_lora_module(m) for m in lora_modules))
        config.faults.load_latency_ms = load_latency_ms
        sim = await self.fleet.add_pod(config, host="127.0.0.1", port=0)
        annotations = {}
        if memory:
            annotations["lora.production-stack.vllm-project/adapter-memory"] = memory
        labels = {"app": "vllm", "lora-enabled": "true", "model": model, **(labels or {})}
        await self.kube.create(PODS, pod_manifest(
            name, port=sim.port, model=model, labels=labels, max_loras=max_loras,
            max_cpu_loras=max_cpu_loras, max_lora_rank=max_lora_rank, node=node,
            annotations=annotations, lora_modules=lora_modules), namespace=self.namespace)
        pod = SimPod(name, sim, sim.port)
        self.pods[name] = pod
        await self.set_status(name, ready=ready)
        return pod

    async def set_status(self, name: str, *, ready: bool = True) -> None:
        await set_pod_status(self.kube, self.namespace, name, ready=ready,
                             restarts=self.pods[name].restarts)

    async def restart_pod(self, name: str) -> None:
        """The vLLM container restarts: it forgets runtime-loaded adapters, the kubelet counts it."""
        pod = self.pods[name]
        await pod.sim.restart()
        pod.restarts += 1
        await self.set_status(name)

    async def delete_pod(self, name: str) -> None:
        pod = self.pods.pop(name)
        await delete_pod_now(self.kube, self.namespace, name)
        await self.fleet.remove_pod(pod.sim)

    def loaded(self, name: str) -> dict[str, str]:
        """What the simulated vLLM of a pod has registered: adapter name -> path."""
        return {a.name: a.path for a in self.pods[name].sim.adapters.values()}

    def successful_loads(self, name: str) -> list[str]:
        return [e.name for e in self.pods[name].sim.load_log
                if e.action == "load" and e.status == 200 and not e.inplace]

    async def apply(self, name: str, spec: JSON) -> JSON:
        body = {"apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": name},
                "spec": spec}
        try:
            return await self.kube.create(LORA_ADAPTERS, body, namespace=self.namespace)
        except ApiError as exc:
            if not exc.conflict:
                raise
            current = await self.kube.get(LORA_ADAPTERS, name, namespace=self.namespace)
            current["spec"] = spec
            return await self.kube.replace(LORA_ADAPTERS, name, current, namespace=self.namespace)

    async def cr(self, name: str) -> JSON:
        return await self.kube.get(LORA_ADAPTERS, name, namespace=self.namespace)

    async def status(self, name: str) -> JSON:
        return (await self.cr(name)).get("status") or {}

    async def wait_status(self, name: str, check: Callable[[JSON], bool], *,
                          timeout: float = 30.0, what: str = "") -> JSON:
        deadline = time.monotonic() + timeout
        status: JSON = {}
        while time.monotonic() < deadline:
            try:
                status = await self.status(name)
            except ApiError:
                status = {}
            if check(status):
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or 'status'} of {name}: "
                             f"{json.dumps(status, indent=1)[:3000]}")


def local_spec(path: Path, **extra: Any) -> JSON:
    """A LoraAdapter spec for local adapters under `path` on pods labelled lora-enabled=true;
    `extra` merges into the top-level fields (dicts are merged, other values replace)."""
    spec: JSON = {
        "baseModel": "tiny-llama",
        "adapterSource": {"type": "local", "repository": str(path)},
        "deploymentConfig": {"podSelector": {"matchLabels": {"lora-enabled": "true"}}},
    }
    for key, value in extra.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


def write_adapters(root: Path, names: list[str]) -> Path:
    """Real adapter folders (config + safetensors) for tiny-llama, one seed per name."""
    from tests.support.adapters import write_adapter

    for i, name in enumerate(names):
        write_adapter(root / name, base_model="tiny-llama", seed=i)
    return root


async def eventually(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class ControllerProcess:
    """`python -m lora_controller run` as a child process, the way it runs in a cluster."""

    def __init__(self, cp: ControlPlane, *, namespace: str | None, store: Path, log_path: Path,
                 extra: list[str] | None = None, kubeconfig: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.cp = cp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = [sys.executable, "-m", "lora_controller", "run",
                     "--kubeconfig", str(kubeconfig or cp.kubeconfig),
                     "--adapter-store", str(store), "--listen", f"127.0.0.1:{self.port}",
                     "--poll-interval", "1", "--resync", "30", "--log-format", "json",
                     "--log-level", "debug", *(["--namespace", namespace] if namespace else []),
                     *(extra or [])]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=str(REPO), env=self.env)
        log.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    async with s.get(self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"controller not ready: {self.tail()}")

    async def get(self, path: str, *, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as s, s.get(
                self.url + path, headers=headers, timeout=aiohttp.ClientTimeout(total=90)) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
