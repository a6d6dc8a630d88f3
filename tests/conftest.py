"""Shared fixtures: one real control plane per test run, a namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.kube.client import KubeClient
from tests.support.controlplane import install_crds, kubectl
from tests.support.secrets import KNOWN

_CONTROL_PLANE = {"control_plane", "private_control_plane"}
_LEAKS: list[str] = []
# Logs of programs that are not ours (the API server and etcd log what clients send them).
_NOT_OURS = {"kube-apiserver.log", "etcd.log"}


def _leaks_in(text: str) -> list[str]:
    return [secret for secret in KNOWN if secret in text]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """No registered credential in any test's captured output (logs of in-process code)."""
    for name, content in report.sections:
        for secret in _leaks_in(content):
            _LEAKS.append(f"{report.nodeid} ({name}): {secret[:6]}...")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No registered credential in any log file the run wrote; a hit fails the run."""
    try:
        base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        base = None
    if base is not None and base.exists():
        for path in base.rglob("*.log"):
            if path.name in _NOT_OURS or not path.is_file():
                continue
            text = path.read_text(errors="replace")
            _LEAKS.extend(f"{path}: {s[:6]}..." for s in _leaks_in(text))
    if _LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("credentials found in logs:\n  " + "\n  ".join(_LEAKS), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what each test needs, so `make unit` can run the rest without building anything:
    `k8s` (a real control plane), `tools` (binaries built from Go modules, such as helm),
    `realvllm` (real vLLM servers)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _CONTROL_PLANE:
            item.add_marker(pytest.mark.k8s)
        if "helm_binary" in names:
            item.add_marker(pytest.mark.tools)
        if "realvllm" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.realvllm)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver, started once per test run, with crds/ installed."""
    directory = Path(os.environ.get("LORA_TEST_KUBEENV") or tmp_path_factory.mktemp("kubeenv"))
    cp = ControlPlane(directory)
    cp.up()
    try:
        install_crds(cp)
        yield cp
    finally:
        cp.down()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A namespace of the test's own (no namespace controller runs: it is deleted, not drained)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl(control_plane, "create", "namespace", name)
    yield name
    kubectl(control_plane, "delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
async def api_client(control_plane: ControlPlane) -> AsyncIterator[k8s_client.ApiClient]:
    """A kubernetes_asyncio client authenticated as the admin user."""
    cfg = k8s_client.Configuration()
    await k8s_config.load_kube_config(config_file=str(control_plane.kubeconfig), client_configuration=cfg)
    async with k8s_client.ApiClient(configuration=cfg) as api:
        yield api


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    """The controller's own JSON client, as the admin user."""
    client = await KubeClient.from_config(kubeconfig=str(control_plane.kubeconfig), timeout=10)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
def private_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of the module's own, for tests that stop it or compact etcd.

    The API server's watch cache is off, so watches read etcd directly and a compaction makes a
    stale watch fail with a real 410 Gone.
    """
    cp = ControlPlane(tmp_path_factory.mktemp("kubeenv-private"))
    cp.up(extra_apiserver_args=["--watch-cache=false"])
    try:
        install_crds(cp)
        yield cp
    finally:
        cp.down()
