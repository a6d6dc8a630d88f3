"""Shared pieces of the controller benchmarks: a real control plane, simulated vLLM pods registered
as Pods, local adapters on disk, and the controller as a process (the way it runs in a cluster)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.controlplane import ControlPlane, free_port
from lora_controller.devenv.simpods import adapter_files, pod_manifest, set_pod_status
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import LORA_ADAPTERS, NAMESPACES, PODS
from lora_controller.simulator.config import PodConfig
from lora_controller.simulator.fleet import SimulatedFleet
from lora_controller.simulator.pod import SimulatedPod

JSON = dict[str, Any]


def write_adapters(root: Path, names: list[str], *, base_model: str = "tiny-llama") -> None:
    """Adapter folders sharing one small weights file (hard links: fast to write, real to read)."""
    files = adapter_files(base_model=base_model, r=4, hidden=16)
    root.mkdir(parents=True, exist_ok=True)
    shared = root / ".weights.safetensors"
    shared.write_bytes(files["adapter_model.safetensors"])
    for name in names:
        folder = root / name
        folder.mkdir(exist_ok=True)
        (folder / "adapter_config.json").write_bytes(files["adapter_config.json"])
        target = folder / "adapter_model.safetensors"
        if not target.exists():
            os.link(shared, target)


class World:
    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="lora-bench-"))
        self.cp = ControlPlane(self.workdir / "kube")
        self.fleet = SimulatedFleet()
        self.kube: KubeClient | None = None
        self.sims: dict[tuple[str, str], SimulatedPod] = {}
        self.controller: subprocess.Popen[bytes] | None = None
        self.url = ""

    async def __aenter__(self) -> World:
        await asyncio.to_thread(self.cp.up)
        await asyncio.to_thread(subprocess.run, ["kubectl", "apply", "-f",
                                                 str(Path(__file__).resolve().parents[1] / "crds")],
                                env={**os.environ, "KUBECONFIG": str(self.cp.kubeconfig)},
                                check=True, capture_output=True)
        await asyncio.to_thread(subprocess.run, ["kubectl", "wait", "--for=condition=Established",
                                                 "crd", "--all", "--timeout=60s"],
                                env={**os.environ, "KUBECONFIG": str(self.cp.kubeconfig)},
                                check=True, capture_output=True)
        self.kube = await KubeClient.from_config(kubeconfig=str(self.cp.kubeconfig), timeout=30,
                                                 pool_size=64)
        await self.fleet.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop_controller()
        await self.fleet.stop()
        if self.kube is not None:
            await self.kube.close()
        await asyncio.to_thread(self.cp.down)

    @property
    def k(self) -> KubeClient:
        assert self.kube is not None
        return self.kube

    async def namespace(self, name: str) -> None:
        await self.k.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": name}})

    async def add_pods(self, namespace: str, count: int, *, prefix: str = "vllm",
                       labels: Callable[[int], dict[str, str]] | None = None,
                       max_loras: int = 4, max_cpu_loras: int = 32, load_latency_ms: float = 0.0,
                       concurrency: int = 32) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            name = f"{prefix}-{i:04d}"
            sim = await self.fleet.add_pod(PodConfig(model="tiny-llama", max_loras=max_loras,
                                                     max_cpu_loras=max_cpu_loras),
                                           host="127.0.0.1", port=0)
            sim.faults.load_latency_ms = load_latency_ms
            self.sims[(namespace, name)] = sim
            lab = {"lora-enabled": "true", "model": "tiny-llama", **(labels(i) if labels else {})}
            async with sem:
                await self.k.create(PODS, pod_manifest(
                    name, port=sim.port, model="tiny-llama", labels=lab, max_loras=max_loras,
                    max_cpu_loras=max_cpu_loras, node=f"node-{i % 50}"), namespace=namespace)
                await set_pod_status(self.k, namespace, name)

        await asyncio.gather(*(one(i) for i in range(count)))

    async def apply(self, namespace: str, name: str, spec: JSON) -> None:
        await self.k.create(LORA_ADAPTERS, {"apiVersion": API_VERSION, "kind": "LoraAdapter",
                                            "metadata": {"name": name}, "spec": spec},
                            namespace=namespace)

    def start_controller(self, *args: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.workdir / "controller.log", "ab")  # noqa: SIM115 - handed to the child
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "lora_controller", "run", "--kubeconfig", str(self.cp.kubeconfig),
             "--adapter-store", str(self.workdir / "store"), "--listen", f"127.0.0.1:{port}",
             "--log-format", "json", "--log-level", "warning", *args],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(Path(__file__).resolve().parents[1]))
        log.close()

    async def wait_controller_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                try:
                    async with s.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("controller not ready")

    def stop_controller(self) -> None:
        if self.controller is not None and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)
            try:
                self.controller.wait(30)
            except subprocess.TimeoutExpired:
                self.controller.kill()

    async def statuses(self, namespace: str | None = None) -> list[JSON]:
        items: list[JSON] = []
        token = None
        while True:
            page = await self.k.list(LORA_ADAPTERS, namespace=namespace, limit=500,
                                     continue_token=token)
            items.extend(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return items

    async def wait_all_ready(self, expected: int, *, namespace: str | None = None,
                             timeout: float = 600, poll: float = 0.05) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            items = await self.statuses(namespace)
            ready = sum(1 for i in items if (i.get("status") or {}).get("phase") == "Ready"
                        and (i.get("status") or {}).get("observedGeneration")
                        == i["metadata"]["generation"])
            if ready >= expected:
                return time.monotonic() - started
            await asyncio.sleep(poll)
        raise RuntimeError(f"not Ready within {timeout}s")


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


async def apiserver_requests(world: World) -> dict[tuple[str, str], float]:
    """apiserver_request_total summed by (verb, resource), read from the API server itself."""
    text = await world.k.api.call_api(
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
