"""End to end, resilience: two replicas with leader election, and the API server restarted."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import Cluster, create_namespace, local_spec
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.waiting import eventually
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import LEASES
from lora_controller.simulator.fleet import SimulatedFleet

pytestmark = pytest.mark.k8s

FAST_LEASE = ["--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5"]


async def test_two_replicas_one_leader_and_takeover(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    root = write_adapters(tmp_path / "adapters", [f"lora-{i}" for i in range(4)])
    await cluster.add_pod("vllm-0", max_cpu_loras=8)
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    args = [*FAST_LEASE, "--lease-name", lease, "--lease-namespace", cluster.namespace]
    a = start_controller(*args, "--identity", "replica-a", name="a")
    await a.wait_ready()
    b = start_controller(*args, "--identity", "replica-b", name="b")
    await b.wait_ready()
    await cluster.apply("x", local_spec(root))
    await cluster.wait_status("x", lambda s: s.get("phase") == "Ready", what="Ready")
    holder = (await cluster.kube.get(LEASES, lease, namespace=cluster.namespace))["spec"]["holderIdentity"]
    leader, standby = (a, b) if holder == "replica-a" else (b, a)
    # Both serve the router API from the same truth (a standby within a poll period).
    for replica in (a, b):
        deadline = time.monotonic() + 5
        while True:
            code, body = await replica.get(f"/v1/adapters/lora-0/pods?namespace={cluster.namespace}")
            if code == 200 and [p["name"] for p in body["pods"]] == ["vllm-0"]:
                break
            assert time.monotonic() < deadline, (code, body)
            await asyncio.sleep(0.2)
    # Only the leader ever called vLLM's load API.
    assert '"vllm_adapter_load"' in leader.log_path.read_text()
    assert '"vllm_adapter_load"' not in standby.log_path.read_text()

    # Kill the leader; the standby takes over within the lease duration and repairs drift.
    leader.stop(signal.SIGKILL)
    killed = time.monotonic()
    await cluster.restart_pod("vllm-0")
    await eventually(lambda: len(cluster.loaded("vllm-0")) == 4, timeout=30, what="takeover repair")
    assert time.monotonic() - killed < 4 + 10, "the standby took over and reloaded"
    got = (await cluster.kube.get(LEASES, lease, namespace=cluster.namespace))["spec"]["holderIdentity"]
    assert got == ("replica-b" if leader is a else "replica-a")
    loads = cluster.successful_loads("vllm-0")
    assert len(loads) == 8, f"4 loads, then 4 after the restart, and no more: {loads}"


@pytest.fixture
async def private_cluster(private_control_plane: ControlPlane) -> AsyncIterator[Cluster]:
    kube = await KubeClient.from_config(kubeconfig=str(private_control_plane.kubeconfig), timeout=5)
    ns = f"t-{uuid.uuid4().hex[:10]}"
    await create_namespace(kube, ns)
    async with SimulatedFleet() as fleet:
        yield Cluster(ns, kube, fleet)
    await kube.close()


async def test_api_server_restarted_mid_convergence(
    private_cluster: Cluster, private_control_plane: ControlPlane, tmp_path: Path
) -> None:
    cluster = private_cluster
    names = [f"lora-{i}" for i in range(10)]
    root = write_adapters(tmp_path / "adapters", names)
    await cluster.add_pods(["vllm-0", "vllm-1"], max_cpu_loras=16, load_latency_ms=200)
    ctl = ControllerProcess(private_control_plane, namespace=cluster.namespace, store=tmp_path / "s",
                            log_path=tmp_path / "controller.log",
                            extra=["--load-concurrency", "1", "--no-leader-elect"])
    ctl.start()
    try:
        await ctl.wait_ready()
        await cluster.apply("x", local_spec(root))
        await eventually(lambda: sum(len(cluster.loaded(p)) for p in cluster.pods) >= 2, timeout=20,
                         what="loading started")
        await asyncio.to_thread(private_control_plane.stop_apiserver)
        await asyncio.sleep(20)  # the API server stays down 20 s
        await asyncio.to_thread(private_control_plane.start_apiserver)
        status = await cluster.wait_status("x", lambda s: s.get("phase") == "Ready", timeout=90,
                                           what="Ready after the API server came back")
        assert status["loadedCount"] == 10
        cluster.assert_every_pod_serves_once(names)
    finally:
        ctl.kill()
