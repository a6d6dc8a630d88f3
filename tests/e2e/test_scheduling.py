"""End to end, scheduling: capacity exhaustion and preemption, conflicts, lazy loading, foreign
adapters, and the controller restarted in the middle of loading."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from lora_controller.devenv.adapters import write_adapter, write_adapters
from lora_controller.devenv.cluster import Cluster, local_spec
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.waiting import eventually

pytestmark = pytest.mark.k8s


async def test_full_pod_then_preemption_by_higher_priority(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    low = write_adapters(tmp_path / "low", ["low-1", "low-2", "low-3"])
    high = write_adapters(tmp_path / "high", ["high-1"])
    await cluster.add_pod("vllm-0", max_loras=1, max_cpu_loras=2)
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("low", local_spec(low, schedulingConfig={"priority": 1}))
    status = await cluster.wait_status("low", lambda s: s.get("phase") == "Partial", what="Partial")
    assert status["loadedCount"] == 2 and status["failedCount"] == 1
    reason = status["failedAdapters"][0]["reason"]
    assert "slot" in reason.lower(), reason
    assert len(cluster.loaded("vllm-0")) == 2

    await cluster.apply("high", local_spec(high, schedulingConfig={"priority": 100,
                                                              "preemptionPolicy": "LowerPriority"}))
    await cluster.wait_status("high", lambda s: s.get("phase") == "Ready", what="high Ready")
    status = await cluster.wait_status(
        "low", lambda s: s.get("loadedCount") == 1, what="low preempted")
    reasons = " ".join(f["reason"] for f in status["failedAdapters"])
    assert f"{cluster.namespace}/high" in reasons and "priority 100" in reasons, reasons
    assert "high-1" in cluster.loaded("vllm-0") and len(cluster.loaded("vllm-0")) == 2
    # A None-policy resource never evicts.
    never = write_adapters(tmp_path / "never", ["never-1"])
    await cluster.apply("never", local_spec(never, schedulingConfig={"priority": 1000,
                                                                "preemptionPolicy": "None"}))
    status = await cluster.wait_status("never", lambda s: s.get("phase") == "Failed", what="Failed")
    assert "never-1" not in cluster.loaded("vllm-0")


async def test_conflicting_names_flag_the_later_resource_without_flapping(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    first = write_adapters(tmp_path / "first", ["shared", "only-first"])
    second = write_adapters(tmp_path / "second", ["shared"])
    await cluster.add_pod("vllm-0")
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("first", local_spec(first))
    await cluster.wait_status("first", lambda s: s.get("phase") == "Ready", what="first Ready")
    await cluster.apply("second", local_spec(second))
    status = await cluster.wait_status(
        "second", lambda s: any(c["type"] == "Conflict" and c["status"] == "True"
                                for c in s.get("conditions", [])), what="Conflict")
    conflict = next(c for c in status["conditions"] if c["type"] == "Conflict")
    assert f"{cluster.namespace}/first" in conflict["message"]
    assert cluster.loaded("vllm-0")["shared"] == str(first / "shared")
    loads_before = len(cluster.pods["vllm-0"].sim.load_log)
    await asyncio.sleep(3)  # several poll periods
    assert len(cluster.pods["vllm-0"].sim.load_log) == loads_before, "nothing flaps"
    first_status = await cluster.status("first")
    assert first_status["phase"] == "Ready"


async def test_lazy_adapter_loads_on_first_router_request(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    lazy = write_adapters(tmp_path / "lazy", ["lazy-1"])
    await cluster.add_pod("vllm-0")
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("lazy", local_spec(lazy, deploymentConfig={"loadOnStartup": False}))
    status = await cluster.wait_status("lazy", lambda s: s.get("phase") == "Ready", what="Ready")
    assert status["loadedAdapters"] == [] and cluster.loaded("vllm-0") == {}
    code, body = await ctl.get(f"/v1/adapters/lazy-1/pods?namespace={cluster.namespace}")
    assert code == 200 and body["pods"] == []
    code, body = await ctl.get(f"/v1/adapters/lazy-1/pods?namespace={cluster.namespace}&ensure=true")
    assert code == 200, body
    assert [p["name"] for p in body["pods"]] == ["vllm-0"]
    assert cluster.loaded("vllm-0") == {"lazy-1": str(lazy / "lazy-1")}
    status = await cluster.wait_status("lazy", lambda s: s.get("loadedAdapters") == ["lazy-1"],
                                       what="loaded lazily")
    await asyncio.sleep(2.5)
    assert "lazy-1" in cluster.loaded("vllm-0"), "a lazily loaded adapter stays loaded"
    code, body = await ctl.get("/v1/adapters/lazy-1/pods?ensure=maybe")
    assert code == 400 and body["error"]["reason"] == "InvalidQuery"


async def test_foreign_adapters_are_left_alone_and_take_room(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    ours = write_adapters(tmp_path / "ours", ["ours-1", "ours-2"])
    write_adapter(tmp_path / "foreign" / "by-hand", base_model="tiny-llama", seed=9)
    await cluster.add_pod("vllm-0", max_loras=1, max_cpu_loras=2,
                          lora_modules=(f"startup={tmp_path / 'foreign' / 'by-hand'}",))
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("ours", local_spec(ours))
    status = await cluster.wait_status("ours", lambda s: s.get("phase") == "Partial", what="Partial")
    loaded = cluster.loaded("vllm-0")
    assert "startup" in loaded and len(loaded) == 2, loaded
    assert status["loadedCount"] == 1
    await cluster.kube.delete(__import__("lora_controller.kube.resources", fromlist=["x"]).LORA_ADAPTERS,
                              "ours", namespace=cluster.namespace)
    await eventually(lambda: set(cluster.loaded("vllm-0")) == {"startup"}, timeout=20,
                     what="only our adapters unloaded")


async def test_controller_killed_mid_load_converges_without_duplicate_loads(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    names = [f"a-{i:02d}" for i in range(12)]
    root = write_adapters(tmp_path / "many", names)
    await cluster.add_pods(["vllm-0", "vllm-1"], max_cpu_loras=16, load_latency_ms=300)
    ctl = start_controller("--load-concurrency", "2", name="first")
    await ctl.wait_ready()
    await cluster.apply("many", local_spec(root))
    await eventually(lambda: sum(len(cluster.loaded(p)) for p in cluster.pods) >= 4, timeout=20,
                     what="some loads done")
    ctl.stop(signal.SIGKILL)
    second = start_controller("--load-concurrency", "2", name="second")
    await second.wait_ready()
    status = await cluster.wait_status("many", lambda s: s.get("phase") == "Ready", timeout=60,
                                       what="Ready after the restart")
    assert status["loadedCount"] == 12
    cluster.assert_every_pod_serves_once(names)


async def test_each_resource_lands_only_on_pods_its_selector_matches(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    gold = write_adapters(tmp_path / "gold", ["gold-1", "gold-2"])
    silver = write_adapters(tmp_path / "silver", ["silver-1"])
    await cluster.add_pod("gold-0", labels={"tier": "gold"})
    await cluster.add_pod("gold-1", labels={"tier": "gold"})
    await cluster.add_pod("silver-0", labels={"tier": "silver"})
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("gold", local_spec(gold, deploymentConfig={
        "podSelector": {"matchLabels": {"lora-enabled": "true", "tier": "gold"}}}))
    await cluster.apply("silver", local_spec(silver, deploymentConfig={
        "podSelector": {"matchLabels": {"lora-enabled": "true", "tier": "silver"}}}))
    for name in ("gold", "silver"):
        await cluster.wait_status(name, lambda s: s.get("phase") == "Ready", what=f"{name} Ready")
    assert set(cluster.loaded("gold-0")) == set(cluster.loaded("gold-1")) == {"gold-1", "gold-2"}
    assert set(cluster.loaded("silver-0")) == {"silver-1"}
    # A selector nothing matches: a reason that says so.
    await cluster.apply("bronze", local_spec(silver, deploymentConfig={
        "podSelector": {"matchLabels": {"tier": "bronze"}}}))
    status = await cluster.wait_status("bronze", lambda s: s.get("phase") == "Failed", what="Failed")
    assert "podSelector" in status["failedAdapters"][0]["reason"], status["failedAdapters"]


async def test_a_pod_without_runtime_updates_is_named_in_the_reason(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    from lora_controller.devenv.simpods import pod_manifest, set_pod_status
    from lora_controller.kube.resources import PODS

    root = write_adapters(tmp_path / "a", ["lora-a"])
    body = pod_manifest("vllm-static", port=18000, model="tiny-llama",
                        labels={"lora-enabled": "true", "model": "tiny-llama"})
    body["spec"]["containers"][0]["env"] = []  # VLLM_ALLOW_RUNTIME_LORA_UPDATING not set
    await cluster.kube.create(PODS, body, namespace=cluster.namespace)
    await set_pod_status(cluster.kube, cluster.namespace, "vllm-static")
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("x", local_spec(root))
    status = await cluster.wait_status("x", lambda s: s.get("phase") == "Failed", what="Failed")
    reason = status["failedAdapters"][0]["reason"]
    assert "pod vllm-static takes no adapter" in reason, reason
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in reason, reason
