"""Fixtures for end-to-end tests: a namespace with simulated vLLM pods, and the controller process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from lora_controller.devenv.cluster import Cluster
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.kube.client import KubeClient
from lora_controller.simulator.fleet import SimulatedFleet


@pytest.fixture
async def cluster(control_plane: ControlPlane, namespace: str) -> AsyncIterator[Cluster]:
    kube = await KubeClient.from_config(kubeconfig=str(control_plane.kubeconfig), timeout=10)
    async with SimulatedFleet() as fleet:
        yield Cluster(namespace, kube, fleet)
    await kube.close()


@pytest.fixture
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture
def start_controller(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., ControllerProcess]]:
    started: list[ControllerProcess] = []

    def start(*extra: str, name: str = "controller", kubeconfig: Path | None = None,
              env: dict[str, str] | None = None, store: Path | None = None,
              all_namespaces: bool = False) -> ControllerProcess:
        proc = ControllerProcess(
            control_plane, namespace=None if all_namespaces else namespace,
            store=store or tmp_path / "store", log_path=tmp_path / f"{name}.log",
            extra=list(extra), kubeconfig=kubeconfig, env=env)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
