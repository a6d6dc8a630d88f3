"""End to end: lazy loads and reconciles of one namespace never write at the same time.

Before the pipeline was split, `GET /v1/adapters/{name}/pods?ensure=true` loaded the adapter from
the request handler, beside any reconcile of the same namespace: concurrent asks each sent their
own load (a slow load made them pile up), and a reconcile running meanwhile planned against reports
taken before the load. Now an ask only marks the adapter active and enqueues its namespace; the
namespace's reconcile, its one writer, loads it once per pod.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import Cluster, local_spec
from lora_controller.devenv.controller_process import ControllerProcess

pytestmark = pytest.mark.k8s


async def test_concurrent_lazy_asks_and_reconciles_make_one_load_per_pod(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    lazy = write_adapters(tmp_path / "lazy", ["slow-1", "other-1"])
    await cluster.add_pod("vllm-0", load_latency_ms=800)
    await cluster.add_pod("vllm-1", load_latency_ms=800)
    ctl = start_controller()
    await ctl.wait_ready()
    spec = local_spec(lazy, deploymentConfig={"loadOnStartup": False})
    await cluster.apply("lazy", spec)
    await cluster.wait_status("lazy", lambda s: s.get("phase") == "Ready", what="Ready")
    path = f"/v1/adapters/slow-1/pods?namespace={cluster.namespace}&ensure=true"

    async def spec_changes() -> None:  # each one makes the namespace reconcile again
        for priority in (1, 2, 3):
            await cluster.apply("lazy", {**spec, "schedulingConfig": {"priority": priority}})
            await asyncio.sleep(0.3)

    answers, _ = await asyncio.gather(
        asyncio.gather(*(ctl.get(path) for _ in range(20))), spec_changes())
    assert all(code == 200 for code, _ in answers), answers
    served = {tuple(p["name"] for p in body["pods"]) for _, body in answers}
    assert len(served) == 1 and served != {()}, served
    (pods,) = served
    for name in pods:  # every load call, the ones answered "already loaded" included
        calls = cluster.pods[name].sim.request_counts["POST /v1/load_lora_adapter"]
        assert calls == 1, f"{name}: {calls} load calls for 20 asks"
    await asyncio.sleep(2.5)  # reconciles after the spec changes
    for name in pods:
        assert "slow-1" in cluster.loaded(name), "a confirmed lazy load is never lost"
        assert "other-1" not in cluster.loaded(name), "nobody asked for other-1"
