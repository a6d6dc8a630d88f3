"""End to end, local source: discovery, placement with replicas, loading, status, router API, drift."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lora_controller.devenv.adapters import write_adapter
from lora_controller.devenv.cluster import Cluster, local_spec
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.waiting import eventually

pytestmark = pytest.mark.k8s


def make_adapters(root: Path, names: list[str], **kwargs: Any) -> None:
    for i, name in enumerate(names):
        write_adapter(root / name, base_model="tiny-llama", seed=i, **kwargs)


async def test_local_adapters_converge_with_replicas_and_router_agrees(
    cluster: Cluster, adapter_dir: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    make_adapters(adapter_dir, ["lora-a", "lora-b", "lora-c", "other"])
    for i in range(3):
        await cluster.add_pod(f"vllm-{i}", node=f"node-{i}")
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("local", local_spec(adapter_dir, adapterSource={"prefix": "lora-"},
                                            deploymentConfig={"replicas": 2}))
    status = await cluster.wait_status("local", lambda s: s.get("phase") == "Ready", what="Ready")
    assert sorted(status["loadedAdapters"]) == ["lora-a", "lora-b", "lora-c"]
    assert status["desiredCount"] == 3 and status["loadedCount"] == 3 and status["failedCount"] == 0
    assert status["observedGeneration"] == 1
    # Every adapter on exactly 2 distinct pods, as vLLM itself reports.
    where: dict[str, list[str]] = {}
    for name in cluster.pods:
        for adapter, path in cluster.loaded(name).items():
            assert path == str(adapter_dir / adapter)
            where.setdefault(adapter, []).append(name)
    assert {a: len(p) for a, p in where.items()} == {"lora-a": 2, "lora-b": 2, "lora-c": 2}
    # Status podAssignments agree with the pods.
    assigned = {(pa["pod"], a) for pa in status["podAssignments"] for a in pa["adapters"]}
    assert assigned == {(p, a) for a, pods in where.items() for p in pods}
    # The router API agrees with the pods.
    code, body = await ctl.get(f"/v1/adapters/lora-a/pods?namespace={cluster.namespace}")
    assert code == 200
    assert sorted(p["name"] for p in body["pods"]) == sorted(where["lora-a"])
    assert all(p["baseUrl"] == f"http://127.0.0.1:{cluster.pods[p['name']].port}" for p in body["pods"])
    code, listing = await ctl.get("/v1/adapters?baseModel=tiny-llama")
    assert code == 200 and sorted(a["name"] for a in listing["adapters"]) == ["lora-a", "lora-b", "lora-c"]
    code, pod_view = await ctl.get(f"/v1/pods/{cluster.namespace}/vllm-0/adapters")
    assert code == 200
    assert sorted(a["name"] for a in pod_view["adapters"]) == sorted(cluster.loaded("vllm-0"))
    code, cr_view = await ctl.get(f"/v1/loraadapters/{cluster.namespace}/local")
    assert code == 200 and cr_view["status"]["phase"] == "Ready"
    code, missing = await ctl.get("/v1/adapters/nope/pods")
    assert code == 404 and missing["error"]["reason"] == "AdapterNotFound"
    # No adapter was loaded twice anywhere.
    for name in cluster.pods:
        cluster.assert_loaded_once(name)

    # A vLLM restart loses its adapters: reloaded without any change to the resource.
    victim = next(iter(where["lora-a"]))
    before = set(cluster.loaded(victim))
    await cluster.restart_pod(victim)
    assert cluster.loaded(victim) == {}
    await eventually(lambda: set(cluster.loaded(victim)) == before, timeout=20, what="drift repair")

    # A pod deleted: its adapters move to the pod that remains free of them.
    gone = where["lora-b"][0]
    await cluster.delete_pod(gone)
    await eventually(lambda: sum("lora-b" in cluster.loaded(p) for p in cluster.pods) == 2,
                     timeout=20, what="lora-b placed again")
    status = await cluster.wait_status(
        "local", lambda s: s.get("phase") == "Ready" and all(
            pa["pod"] != gone for pa in s.get("podAssignments", [])), what="Ready without the pod")

    # The resource deleted: the finalizer unloads every adapter first.
    await cluster.kube.delete(__import__("lora_controller.kube.resources", fromlist=["x"]).LORA_ADAPTERS,
                              "local", namespace=cluster.namespace)
    await eventually(lambda: all(not cluster.loaded(p) for p in cluster.pods), timeout=20,
                     what="adapters unloaded after deletion")
    ctl.stop()


async def test_router_api_bearer_token(
    cluster: Cluster, adapter_dir: Path, tmp_path: Path,
    start_controller: Callable[..., ControllerProcess],
) -> None:
    make_adapters(adapter_dir, ["lora-a"])
    await cluster.add_pod("vllm-0")
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-router-token\n")
    ctl = start_controller("--router-token-file", str(token_file))
    await ctl.wait_ready()
    await cluster.apply("local", local_spec(adapter_dir))
    await cluster.wait_status("local", lambda s: s.get("phase") == "Ready", what="Ready")
    code, body = await ctl.get("/v1/adapters/lora-a/pods")
    assert code == 401 and body["error"]["reason"] == "Unauthorized"
    code, body = await ctl.get("/v1/adapters/lora-a/pods", token="wrong")
    assert code == 401
    code, body = await ctl.get("/v1/adapters/lora-a/pods", token="s3cret-router-token")
    assert code == 200 and [p["name"] for p in body["pods"]] == ["vllm-0"]
    for open_path in ("/healthz", "/readyz", "/metrics"):
        code, _ = await ctl.get(open_path)
        assert code == 200, open_path
    code, metrics = await ctl.get("/metrics")
    assert 'lora_controller_router_requests_total{code="401"' in metrics
    assert "s3cret-router-token" not in ctl.log_path.read_text()
