"""Fixtures of the real-vLLM lane.

Three real vLLM servers start once for this folder, in parallel (each takes most of a minute and
about 3 GB): `--max-loras 2 --max-cpu-loras 3 --max-lora-rank 8`, runtime updating on, the tiny
Llama of the conformance fixtures. Each module gets a namespace of its own in which those servers
are Pods (`vllm-0`..`vllm-2`, exact command line, loopback IP and port, Ready, restartCount), and a
controller process watching that namespace. When a module ends its controller stops and every
adapter is unloaded, so the next module starts from servers as they booted.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.cluster import check_truthful, create_namespace, wait_for_status
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.realvllm import (
    RealVllmPods,
    RealVllmServer,
    ServerConfig,
    start_servers,
    stop_servers,
)
from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.resources import LORA_ADAPTERS, NAMESPACES
from tests.realvllm import lane
from tests.vllm import conformance

JSON = dict[str, Any]
SERVERS = 3
MAX_LORAS, MAX_CPU_LORAS, MAX_LORA_RANK = 2, 3, 8
BASE_MODEL = "tiny-llama"


@pytest.fixture(scope="session")
def vllm_python() -> str:
    return lane.require_vllm_python()


@pytest.fixture(scope="session")
def fixtures_root(vllm_python: str) -> Iterator[Path]:
    """The conformance fixtures (tiny-llama, lora-a..e, lora-r16, lora-wrongbase, ...) under /tmp."""
    root = conformance.build_fixtures(conformance.conformance_dir())
    yield root
    shutil.rmtree(root.parents[1], ignore_errors=True)


@pytest.fixture(scope="package")
async def real_servers(vllm_python: str, fixtures_root: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[RealVllmServer]]:
    config = ServerConfig(model_dir=str(fixtures_root / "tiny-llama"), served_model_name=BASE_MODEL,
                          max_loras=MAX_LORAS, max_cpu_loras=MAX_CPU_LORAS,
                          max_lora_rank=MAX_LORA_RANK)
    logs = tmp_path_factory.mktemp("realvllm-logs")
    servers = [RealVllmServer.of(vllm_python, config, logs / f"vllm-{i}.log") for i in range(SERVERS)]
    await start_servers(servers)
    try:
        yield servers
    finally:
        await stop_servers(servers)


@dataclass
class Lane:
    """One module's namespace: real vLLM Pods and the controller as a process."""

    cp: ControlPlane
    namespace: str
    kube: KubeClient
    pods: RealVllmPods
    controller: ControllerProcess
    fixtures: Path

    def url(self, pod: str) -> str:
        return self.pods.pods[pod].server.url

    def path(self, adapter: str) -> str:
        return str(self.fixtures / adapter)

    async def listed(self) -> dict[str, list[str]]:
        """Pod name -> adapters its real server lists now."""
        names = list(self.pods.pods)
        found = await asyncio.gather(*(lane.adapter_ids(self.url(n)) for n in names))
        return dict(zip(names, found, strict=True))

    async def apply(self, name: str, adapters: list[str], **deployment: Any) -> None:
        spec = {"baseModel": BASE_MODEL,
                "adapterSource": {"type": "local", "repository": str(self.fixtures),
                                  "adapters": adapters},
                "deploymentConfig": {"podSelector": {"matchLabels": {"lora-enabled": "true"}},
                                     **deployment}}
        await self.kube.create(LORA_ADAPTERS, {"apiVersion": API_VERSION, "kind": "LoraAdapter",
                                               "metadata": {"name": name}, "spec": spec},
                               namespace=self.namespace)

    async def status(self, name: str) -> JSON:
        cr = await self.kube.get(LORA_ADAPTERS, name, namespace=self.namespace)
        status: JSON = cr.get("status") or {}
        check_truthful(status)
        return status

    async def wait_status(self, name: str, check: Callable[[JSON], bool], *, timeout: float = 120,
                          what: str = "") -> JSON:
        return await wait_for_status(self.status, name, check, timeout=timeout, what=what,
                                     interval=0.2, context=lambda: "\ncontroller log:\n"
                                     + self.controller.tail(30))

    async def delete(self, name: str, *, timeout: float = 60) -> None:
        """Delete a LoraAdapter and wait until the finalizer let it go."""
        await self.kube.delete(LORA_ADAPTERS, name, namespace=self.namespace)

        async def gone() -> bool:
            try:
                await self.kube.get(LORA_ADAPTERS, name, namespace=self.namespace)
            except ApiError as exc:
                return exc.status == 404
            return False

        await lane.wait_until(gone, timeout=timeout, what=f"{name} deleted")

    @contextlib.asynccontextmanager
    async def removed_at_end(self, name: str) -> AsyncIterator[None]:
        """Delete the LoraAdapter when the block ends (checked); after a failure, quietly."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(ApiError, AssertionError):
                await self.delete(name)
            raise
        await self.delete(name)

    async def controller_metrics(self) -> str:
        code, text = await self.controller.get("/metrics")
        assert code == 200
        return str(text)


@pytest.fixture(scope="module")
async def real_lane(control_plane: ControlPlane, real_servers: list[RealVllmServer],
                    fixtures_root: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lane]:
    namespace = f"rv-{uuid.uuid4().hex[:10]}"
    kube = await KubeClient.from_config(kubeconfig=str(control_plane.kubeconfig), timeout=10)
    await create_namespace(kube, namespace)
    pods = RealVllmPods(kube, namespace)
    work = tmp_path_factory.mktemp("realvllm-lane")
    controller = ControllerProcess(control_plane, namespace=namespace, store=work / "store",
                                   log_path=work / "controller.log")
    try:
        for i, server in enumerate(real_servers):
            if not server.running:  # an earlier module left it down: the kubelet would start it
                server.start()
            await pods.register(f"vllm-{i}", server, model=BASE_MODEL)
        controller.start()
        await controller.wait_ready(60)
        yield Lane(control_plane, namespace, kube, pods, controller, fixtures_root)
    finally:
        controller.kill()
        for server in real_servers:
            if server.running:
                try:
                    await lane.unload_all(server.url)
                except (aiohttp.ClientError, AssertionError, TimeoutError):
                    pass  # a server that no longer answers is not reused by anything that cares
        with contextlib.suppress(ApiError):
            await kube.delete(NAMESPACES, namespace)
        await kube.close()
