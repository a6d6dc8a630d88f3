"""End to end: no orphan, ever, and bounded effort against pods that hang.

Each scenario was an attack that left an adapter loaded after its resource was gone, or starved
the controller: a pod slow to answer while its resource is deleted, a pod relabelled out of the
podSelector, a resource deleted while a lazy load is in flight, and pods whose loads hang.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import Cluster, create_namespace, local_spec
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.kube.client import ApiError
from lora_controller.kube.resources import LORA_ADAPTERS, PODS

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


async def gone(cluster: Cluster, name: str) -> bool:
    try:
        await cluster.cr(name)
    except ApiError as exc:
        return exc.not_found
    return False


async def wait_gone(cluster: Cluster, name: str, *, timeout: float,
                    check: Callable[[], None] = lambda: None) -> None:
    """Wait until LoraAdapter `name` is gone, calling `check` at every look while it is not."""
    deadline = time.monotonic() + timeout
    while not await gone(cluster, name):
        check()
        assert time.monotonic() < deadline, f"{name} still exists after {timeout} s"
        await asyncio.sleep(0.2)


async def test_a_slow_pod_keeps_the_finalizer_until_it_unloads(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    src = write_adapters(tmp_path / "src", ["a-1"])
    await cluster.add_pod("vllm-0")
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("res", local_spec(src))
    await cluster.wait_status("res", lambda s: s.get("phase") == "Ready", what="Ready")
    faults = cluster.pods["vllm-0"].sim.config.faults
    faults.hang_rate, faults.hang_seconds = 1.0, 8.0  # every call takes 8 s (reads time out at 5)
    await cluster.kube.delete(LORA_ADAPTERS, "res", namespace=cluster.namespace)
    await asyncio.sleep(15)
    assert not await gone(cluster, "res"), \
        "the finalizer went while the pod could not be read (the adapter may still be there)"
    faults.hang_rate = 0.0
    await wait_gone(cluster, "res", timeout=60)
    assert cluster.loaded("vllm-0") == {}, "the resource is gone and its adapter too"


async def test_a_pod_relabelled_out_of_the_selector_is_cleaned(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    src = write_adapters(tmp_path / "src", ["a-1"])
    await cluster.add_pod("vllm-0")
    await cluster.add_pod("vllm-1")
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("res", local_spec(src, deploymentConfig={"replicas": 2}))
    await cluster.wait_status("res", lambda s: s.get("phase") == "Ready", what="Ready")
    await cluster.kube.patch(PODS, "vllm-1", {"metadata": {"labels": {"lora-enabled": "false"}}},
                             namespace=cluster.namespace)
    deadline = time.monotonic() + 30
    while "a-1" in cluster.loaded("vllm-1"):
        assert time.monotonic() < deadline, "the adapter stays on the relabelled pod"
        await asyncio.sleep(0.2)
    assert "a-1" in cluster.loaded("vllm-0")
    await cluster.kube.patch(PODS, "vllm-1", {"metadata": {"labels": {"lora-enabled": "true"}}},
                             namespace=cluster.namespace)
    await cluster.wait_status("res", lambda s: s.get("loadedCount") == 1 and len(
        s.get("podAssignments", [])) == 2, what="back on both pods")
    await cluster.kube.patch(PODS, "vllm-1", {"metadata": {"labels": {"lora-enabled": "no"}}},
                             namespace=cluster.namespace)
    await cluster.kube.delete(LORA_ADAPTERS, "res", namespace=cluster.namespace)
    await wait_gone(cluster, "res", timeout=30)
    assert cluster.loaded("vllm-0") == {} and cluster.loaded("vllm-1") == {}


async def test_deleting_during_a_lazy_load_loads_nothing_after(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    src = write_adapters(tmp_path / "src", ["lazy-1"])
    await cluster.add_pod("vllm-0", load_latency_ms=2500)
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("res", local_spec(src, deploymentConfig={"loadOnStartup": False}))
    await cluster.wait_status("res", lambda s: s.get("phase") == "Ready", what="Ready")
    ask = asyncio.create_task(
        ctl.get(f"/v1/adapters/lazy-1/pods?namespace={cluster.namespace}&ensure=true"))
    await asyncio.sleep(0.5)
    await cluster.kube.delete(LORA_ADAPTERS, "res", namespace=cluster.namespace)
    await wait_gone(cluster, "res", timeout=30)
    await ask
    await asyncio.sleep(4)
    assert cluster.loaded("vllm-0") == {}, "nothing is left loaded after the finalizer went"


async def test_hung_pods_do_not_starve_other_namespaces_and_shutdown_is_prompt(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    hung: list[Cluster] = []
    for i in range(4):
        ns = f"{cluster.namespace}-h{i}"
        await create_namespace(cluster.kube, ns)
        other = Cluster(ns, cluster.kube, cluster.fleet)
        await other.add_pod("vllm-0", load_latency_ms=600_000)
        await other.apply("stuck", local_spec(write_adapters(tmp_path / f"h{i}", [f"h{i}-1"])))
        hung.append(other)
    ctl = start_controller("--workers", "4", "--no-leader-elect", all_namespaces=True)
    await ctl.wait_ready()
    await asyncio.sleep(2)  # the four hung namespaces are reconciled first
    await cluster.add_pod("vllm-0")
    started = time.monotonic()
    await cluster.apply("healthy", local_spec(write_adapters(tmp_path / "ok", ["ok-1"])))
    await cluster.wait_status("healthy", lambda s: s.get("phase") == "Ready", timeout=40,
                              what="Ready beside hung pods")
    assert time.monotonic() - started < 30
    for other in hung:  # their loads hang: they say Loading, and nothing is sent twice
        await other.wait_status("stuck", lambda s: s.get("phase") == "Loading", timeout=20,
                                what="Loading while the load hangs")
        assert other.pods["vllm-0"].sim.request_counts["POST /v1/load_lora_adapter"] == 1
    stopping = time.monotonic()
    code = await asyncio.to_thread(ctl.stop, signal.SIGTERM, 45)
    assert code == 0 and time.monotonic() - stopping < 35, (code, ctl.tail())
