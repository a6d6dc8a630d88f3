"""The controller's metrics on a real Prometheus: it scrapes the controller process during an
end-to-end scenario (the demo's world, then loads refused by a pod and a pod's vLLM restarted),
and PromQL, not text, says what the controller did; `promtool check metrics` is clean; the chart's
alerts are evaluated live and every query of the chart's dashboard returns data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import local_spec
from lora_controller.devenv.controlplane import ControlPlane
from tests.prometheus.prom import Prometheus, prometheus, promtool
from tests.view.world import World, demo_world, until

pytestmark = [pytest.mark.k8s, pytest.mark.tools, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
async def world(control_plane: ControlPlane,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with demo_world(control_plane, tmp_path_factory.mktemp("metrics"),
                          leader_elect=True) as w:
        yield w


@pytest.fixture(scope="module")
def prom(world: World, chart_rules: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with prometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{world.ctl.port}"],
                    rules=[chart_rules]) as p:
        yield p


async def get(world: World, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(world.ctl.url + path) as r:
        assert r.status == 200, path
        return await (r.json() if path != "/metrics" else r.text())


async def query(prom: Prometheus, expr: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(prom.query, expr)


async def value(prom: Prometheus, expr: str) -> float | None:
    return await asyncio.to_thread(prom.value, expr)


async def test_promtool_check_metrics_is_clean(world: World) -> None:
    text = await get(world, "/metrics")
    assert "lora_controller_adapters" in text and "workqueue_depth" in text
    proc = await asyncio.to_thread(promtool, "check", "metrics", input=text)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr
    # It does complain when there is something to say (a counter not named *_total).
    bad = "# HELP lora_loads Loads.\n# TYPE lora_loads counter\nlora_loads 1\n"
    proc = await asyncio.to_thread(promtool, "check", "metrics", input=bad)
    assert "counter metrics should have \"_total\" suffix" in proc.stdout + proc.stderr


async def test_what_the_controller_did_in_promql(world: World, prom: Prometheus,
                                                 tmp_path: Path) -> None:
    await until(lambda: prom.value('up{job="lora-controller"}') == 1, what="the first scrape")
    refusing = world.cluster.pods["vllm-tiny-0"].sim
    refusing.faults.refuse_loads = True
    write_adapters(tmp_path / "extra", ["extra-lora"], base_model="tiny-llama")
    await world.cluster.apply("extra", local_spec(tmp_path / "extra"))
    await until(lambda: (prom.value('sum(lora_controller_loads_total{result="error"})') or 0) >= 1,
                what="a refused load counted")
    refusing.faults.refuse_loads = False
    await world.cluster.restart_pod("vllm-tiny-2")
    await world.cluster.wait_status("extra", lambda s: s.get("phase") == "Ready", timeout=60,
                                    what="extra Ready once vllm-tiny-0 takes loads again")
    await world.cluster.apply("extra", local_spec(tmp_path / "extra",
                                                  deploymentConfig={"replicas": 1}))
    await until(lambda: (prom.value('sum(lora_controller_unloads_total{result="ok"})') or 0) >= 2,
                what="the unloads of extra-lora's replicas")

    # Adapters Ready: as many as the controller's API shows confirmed on every placed pod.
    async def ready_in_api() -> int:
        rows = (await get(world, f"/v1/fleet/adapters?namespace={world.namespace}&limit=1000"))
        return sum(1 for r in rows["adapters"] if r["placed"] and not r["failures"]
                   and set(r["placed"]) <= set(r["confirmed"]))

    expected = await ready_in_api()
    assert expected == 6  # the demo's 5 and extra-lora
    await until(lambda: prom.value('max(lora_controller_adapters{phase="Ready"})') == expected,
                what="Ready adapters in Prometheus")
    assert await value(prom, 'max(lora_controller_adapters{phase="Failed"})') == 2  # big-rank, hostile

    # Load failures counted by reason: the reasons the controller's own history gives.
    fleet = await get(world, f"/v1/fleet?namespace={world.namespace}")
    failed = {a["reason"] for a in fleet["actions"] if a["verb"] == "load" and not a["ok"]}
    assert failed, fleet["actions"]
    by_reason = await asyncio.to_thread(
        prom.by, 'sum by (reason) (lora_controller_loads_total{result="error"})', "reason")
    assert set(by_reason) == failed and all(v >= 1 for v in by_reason.values()), by_reason
    # The restarted pod's adapters were drift, repaired.
    await until(lambda: (prom.value("sum(lora_controller_drift_corrections_total)") or 0) >= 1,
                what="drift repairs counted")
    # The work queue drains back to 0; this replica leads.
    await until(lambda: prom.value('max(workqueue_depth{name="loraadapter"})') == 0,
                what="an empty work queue")
    assert await value(prom, 'max(leader_election_master_status{name="lora-controller"})') == 1
    # The chart's alerts, live: failed adapters make LoraAdaptersFailing pending (for: 15m);
    # a leading replica keeps LoraControllerNotLeading quiet.
    await until(lambda: prom.query('ALERTS{alertname="LoraAdaptersFailing",alertstate="pending"}'),
                what="LoraAdaptersFailing pending")
    assert await query(prom, 'ALERTS{alertname="LoraControllerNotLeading"}') == []


async def test_every_dashboard_query_returns_data(world: World, prom: Prometheus,
                                                  dashboard: dict[str, Any]) -> None:
    """After the scenario above (it runs first in this module)."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    await asyncio.sleep(3)  # a rate needs two scrapes of a series the scenario just made
    empty = [expr for expr in exprs if not await query(prom, expr)]
    assert empty == [], empty
