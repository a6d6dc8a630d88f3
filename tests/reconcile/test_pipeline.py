"""The reconcile pipeline, stage by stage, without an API server (fakes.py says what is real)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from lora_controller.api.types import FINALIZER, Phase
from lora_controller.reconcile import pipeline
from lora_controller.reconcile.metrics import DRIFT_CORRECTIONS
from lora_controller.reconcile.snapshot import take_snapshot
from lora_controller.scheduler.model import AdapterKey
from lora_controller.simulator.fleet import SimulatedFleet
from lora_controller.vllm.client import VllmClient
from tests.reconcile.fakes import MODEL, World, cr_object
from tests.support.adapters import write_adapter

NS = "team-a"


def adapters(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        write_adapter(root / name, base_model=MODEL, seed=i)
    return root


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with SimulatedFleet() as fleet, aiohttp.ClientSession() as session:
        client = VllmClient(session=session, timeout=5, load_timeout=10)
        yield World(NS, fleet, client, tmp_path / "store")


async def test_snapshot_reads_unread_usable_pods_only(world: World, tmp_path: Path) -> None:
    await world.add_pod("p1")
    await world.add_pod("p2", ready=False)
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
    snap = await take_snapshot(world.cache, world.observer, NS)
    assert [p.name for p in snap.pods] == ["p1", "p2"]
    assert set(snap.observations) == {"p1"}, "an unready pod is not read before it is usable"
    assert [c.metadata.name for c in snap.live] == ["a"] and not snap.deleting


async def test_one_reconcile_loads_confirms_and_reports_ready(world: World, tmp_path: Path) -> None:
    await world.add_pod("p1")
    await world.add_pod("p2")
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x", "y"]),
                          deploymentConfig={"replicas": 2}))
    await world.reconcile()
    assert set(world.loaded("p1")) == {"x", "y"} and set(world.loaded("p2")) == {"x", "y"}
    phases = [s.phase for name, s in world.writer.statuses if name == "a"]
    assert phases == [Phase.READY], "fast loads: one status write, their outcome"
    final = world.writer.last_status("a")
    assert final.phase is Phase.READY and final.loaded_count == 2 == len(final.loaded_adapters)
    assert FINALIZER in (world.cr("a") or {})["metadata"]["finalizers"]
    # One Event tells both the loads and the Ready they led to (one request, not two).
    assert [(reason, note.split(";")[0]) for _, reason, note in world.writer.events] == [
        ("Ready", "2 adapter(s) served as desired")]
    assert "loaded 4 adapter replica(s) on 2 pod(s)" in world.writer.events[0][2]
    requeue = await world.reconcile()
    assert world.writer.executed.count(world.writer.executed[0]) == 1, "a second pass loads nothing"
    assert requeue == world.reconciler.timing.resync


async def test_loads_that_take_a_while_are_shown_as_loading(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "LOADING_AFTER", 0.1)
    sim = await world.add_pod("p1")
    sim.config.faults.load_latency_ms = 600
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await world.reconcile()
    phases = [s.phase for name, s in world.writer.statuses if name == "a"]
    assert phases == [Phase.LOADING, Phase.READY], "Loading while the loads ran, then Ready"
    assert loop.time() - started < 1.0, "the load started before the Loading status was written"


async def test_a_standby_runs_the_pipeline_and_writes_nothing(world: World, tmp_path: Path) -> None:
    world.leading = False
    await world.add_pod("p1")
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
    await world.reconcile()
    assert world.loaded("p1") == {} and world.writer.statuses == [] and not world.writer.executed
    state = world.reconciler.states[NS]
    assert state.schedule is not None and state.schedule.placement, "it still places (for routers)"


async def test_a_restarted_pod_gets_its_adapters_back(world: World, tmp_path: Path) -> None:
    sim = await world.add_pod("p1")
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
    await world.reconcile()
    before = DRIFT_CORRECTIONS._value.get()
    await sim.restart()
    await world.observer.probe(world.cache.pods(NS)[0].ref)
    told = len(world.writer.events)
    await world.reconcile()
    assert set(world.loaded("p1")) == {"x"}
    assert DRIFT_CORRECTIONS._value.get() == before + 1
    # Ready before and after: the repair is told by its own Event.
    assert [reason for _, reason, _ in world.writer.events[told:]] == ["AdaptersLoaded"]


async def test_a_failing_load_backs_off_and_says_why(world: World, tmp_path: Path) -> None:
    sim = await world.add_pod("p1")
    sim.config.faults.refuse_loads = True
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
    requeue = await world.reconcile()
    status = world.writer.last_status("a")
    assert status.phase is Phase.FAILED and "load on pod p1 failed" in status.failed_adapters[0].reason
    assert requeue is not None and 0.5 <= requeue <= 1.0, "the next try waits for the backoff"
    tries = len(world.writer.executed)
    await world.reconcile()
    assert len(world.writer.executed) == tries, "no retry before the backoff ends"
    sim.config.faults.refuse_loads = False
    await world.clock.advance(1.1)
    await world.reconcile()
    assert world.writer.last_status("a").phase is Phase.READY


async def test_one_resource_failing_never_stops_the_others(world: World, tmp_path: Path) -> None:
    await world.add_pod("p1")
    world.apply(cr_object(NS, "good", adapters(tmp_path / "good", ["x"])))
    world.apply(cr_object(NS, "bad", tmp_path / "bad", created="2026-01-02T00:00:00Z"))
    real = world.reconciler.discovery.discover_fn

    async def discover(spec, **kw):  # type: ignore[no-untyped-def]
        if spec.adapter_source.repository.endswith("bad"):
            raise RecursionError("maximum recursion depth exceeded")
        return await real(spec, **kw)

    world.reconciler.discovery.discover_fn = discover
    await world.reconcile()
    assert world.writer.last_status("good").phase is Phase.READY
    bad = world.writer.last_status("bad")
    ready = next(c for c in bad.conditions if c.type == "Ready")
    assert bad.phase is Phase.FAILED and ready.reason == "InternalError"
    assert "RecursionError" in ready.message


async def test_a_slow_remote_source_shows_pending_first(world: World, tmp_path: Path) -> None:
    from lora_controller.reconcile.cache import ClusterCache

    await world.add_pod("p1")
    local = ClusterCache()._parse(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
    remote = cr_object(NS, "a", tmp_path)
    remote["spec"]["adapterSource"] = {"type": "s3", "repository": "s3://bucket/x"}
    world.apply(remote)
    real = world.reconciler.discovery.discover_fn

    async def slow(spec, **kw):  # type: ignore[no-untyped-def]
        await asyncio.sleep(1.3)  # a bucket slow to list; its listing: the local adapters
        return await real(local.spec, **kw)

    world.reconciler.discovery.discover_fn = slow
    await world.reconcile()
    phases = [s.phase for _, s in world.writer.statuses]
    assert phases[0] is Phase.PENDING and phases[-1] is Phase.READY


async def test_a_local_source_goes_straight_to_work(world: World, tmp_path: Path) -> None:
    await world.add_pod("p1")
    for i in range(40):  # many resources: discovering them all takes a while, each is quick
        world.apply(cr_object(NS, f"r{i:02d}", adapters(tmp_path / f"s{i}", [f"x{i}"])))
    await world.reconcile()
    assert Phase.PENDING not in {s.phase for _, s in world.writer.statuses}


async def test_deleting_unloads_then_drops_the_finalizer(world: World, tmp_path: Path) -> None:
    await world.add_pod("p1")
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
    await world.reconcile()
    world.delete("a")
    await world.reconcile()
    assert world.loaded("p1") == {}
    await world.reconcile()
    assert world.writer.finalizers_removed == ["a"]


async def test_lazy_requests_share_one_load_and_a_deleted_resource_loads_nothing(
        world: World, tmp_path: Path) -> None:
    sim = await world.add_pod("p1")
    sim.config.faults.load_latency_ms = 200
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x", "y"]),
                          deploymentConfig={"loadOnStartup": False}))
    await world.reconcile()
    assert world.loaded("p1") == {} and world.writer.last_status("a").phase is Phase.READY
    x, y = AdapterKey(NS, "a", "x"), AdapterKey(NS, "a", "y")
    asks = [world.lazy.request(x) for _ in range(50)]
    assert len({id(f) for f in asks}) == 1, "concurrent asks share one request"
    await asyncio.gather(world.reconcile(), world.reconcile())  # two rounds racing
    assert await asks[0] is None and set(world.loaded("p1")) == {"x"}
    loads = [e for e in sim.load_log if e.action == "load" and e.name == "x"]
    assert len(loads) == 1, f"one load for 50 asks and two rounds, saw {len(loads)}"
    late = world.lazy.request(y)
    world.delete("a")
    await world.reconcile()
    assert "no longer wanted" in (await late or "")
    assert "y" not in world.loaded("p1"), "nothing is loaded for a resource being deleted"


async def test_a_pod_that_accepts_loads_it_never_lists_is_backed_off_with_a_reason(
        world: World, tmp_path: Path) -> None:
    from tests.reconcile.hostile import lying_pod

    async with lying_pod() as liar:
        world.add_endpoint("liar", liar.port)
        world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
        await world.reconcile()
        status = world.writer.last_status("a")
        assert status.phase is Phase.FAILED
        assert "does not list the adapter" in status.failed_adapters[0].reason
        for _ in range(5):  # rounds without waiting for the backoff send nothing more
            await world.reconcile()
        assert liar.calls["/v1/load_lora_adapter"] == 1
        await world.clock.advance(1.1)
        await world.reconcile()
        assert liar.calls["/v1/load_lora_adapter"] == 2, "retried once the backoff ended"


async def test_unloads_are_bounded_per_round_and_backed_off(world: World, tmp_path: Path) -> None:
    from lora_controller.reconcile.planning import MAX_ACTIONS_PER_POD
    from tests.reconcile.hostile import lying_pod

    ghosts = {f"g{i:04d}": str(world.store_root / NS / "ghost" / f"g{i:04d}" / "v1")
              for i in range(500)}
    async with lying_pod(listed=ghosts) as liar:
        world.add_endpoint("liar", liar.port)
        world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
        await world.reconcile()
        assert liar.calls["/v1/unload_lora_adapter"] == MAX_ACTIONS_PER_POD
        assert "/v1/load_lora_adapter" not in liar.calls, "unloads go first"
        for _ in range(3):
            await world.reconcile()
        assert liar.calls["/v1/unload_lora_adapter"] == MAX_ACTIONS_PER_POD, \
            "a pod that still lists what it unloaded is backed off as a whole"
        await world.clock.advance(1.1)
        await world.reconcile()
        assert liar.calls["/v1/unload_lora_adapter"] == 2 * MAX_ACTIONS_PER_POD


async def test_a_hung_pod_does_not_hold_the_reconcile(world: World, tmp_path: Path) -> None:
    from tests.reconcile.hostile import lying_pod

    world.reconciler.timing = replace(world.reconciler.timing, action_wait=0.3)
    async with lying_pod(hang=2.0) as slow:
        world.add_endpoint("slow", slow.port)
        world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["x"])))
        started = asyncio.get_running_loop().time()
        await world.reconcile()
        assert asyncio.get_running_loop().time() - started < 1.5
        assert world.writer.last_status("a").phase is Phase.LOADING
        await world.reconcile()  # the load is still in flight: it is not sent again
        assert slow.calls["/v1/load_lora_adapter"] == 1
        await asyncio.sleep(2.0)
        assert NS in world.enqueued, "the late outcome enqueues its namespace"
        await world.reconcile()
        status = world.writer.last_status("a")
        assert "does not list the adapter" in status.failed_adapters[0].reason


async def test_ownership_survives_a_restart_and_a_repository_change(
        world: World, tmp_path: Path) -> None:
    await world.add_pod("p1")
    world.apply(cr_object(NS, "a", adapters(tmp_path / "one", ["x"])))
    await world.reconcile()
    assert set(world.loaded("p1")) == {"x"}
    # A new controller (nothing in memory) finds the resource pointed at another repository: the
    # adapter loaded from the old one is still known as its own, and unloaded.
    fresh = World(NS, world.fleet, world.client, world.store_root)
    fresh.sims = world.sims
    fresh.add_endpoint("p1", world.sims["p1"].port)
    obj = world.cr("a")
    assert obj is not None
    # Without its status (status lists are capped at 100 entries: it cannot be the record).
    obj = {k: v for k, v in obj.items() if k != "status"}
    obj = {**obj, "metadata": {**obj["metadata"], "generation": 2, "resourceVersion": "50"},
           "spec": {**obj["spec"], "adapterSource": {"type": "local",
                                                     "repository": str(adapters(tmp_path / "two",
                                                                                ["y"]))}}}
    fresh.apply(obj)
    await fresh.reconcile()
    assert set(fresh.loaded("p1")) == {"y"}, "x came from the old repository and is unloaded"


def test_paths_are_normalised_before_ownership() -> None:
    from lora_controller.reconcile.refs import PodRef
    from lora_controller.reconcile.world import Ownership

    own = Ownership(store_root="/store", namespace=NS, local_roots={"a": "/models/team"})
    pod = PodRef(NS, "p1")
    assert own.owner(pod, "x", "/store/team-a/a/x/v1") is not None
    assert own.owner(pod, "x", f"/store/{NS}/x/../../../etc") is None
    assert own.owner(pod, "x", "/models/team/../other/x") is None
    assert own.owner(pod, "x", "/models/team/sub/x") is not None


async def test_a_dry_run_plans_what_the_reconcile_then_does(world: World, tmp_path: Path) -> None:
    from lora_controller.reconcile.cache import ClusterCache

    await world.add_pod("p1")
    await world.add_pod("p2")
    src = adapters(tmp_path / "src", ["x", "y"])
    world.apply(cr_object(NS, "a", src, deploymentConfig={"replicas": 1}))
    await world.reconcile()
    before = dict(world.writer.statuses)
    changed = cr_object(NS, "a", src, deploymentConfig={"replicas": 2})
    changed["metadata"]["generation"] = 2
    new = cr_object(NS, "b", adapters(tmp_path / "more", ["z"]), created="2026-01-03T00:00:00Z")
    parsed = [ClusterCache()._parse(o) for o in (changed, new)]
    run = await world.reconciler.dry_run(NS, parsed)
    planned = sorted((a.pod.name, a.name) for a in run.plan.loads)
    assert sorted(n for _, n in planned) == ["x", "y", "z", "z"] and not run.plan.unloads
    assert dict(world.writer.statuses) == before, "a dry run writes nothing"
    assert world.reconciler.discovery.peek(__import__(
        "lora_controller.reconcile.refs", fromlist=["CrRef"]).CrRef(NS, "b")) is None, \
        "and leaves the discovery cache alone"
    loaded_before = {p: set(world.loaded(p)) for p in ("p1", "p2")}
    world.apply(changed)
    world.apply(new)
    world.writer.executed.clear()
    await world.reconcile()
    done = sorted((a.pod.name, a.name) for a in world.writer.executed)
    assert done == planned, (done, planned, loaded_before)


async def test_what_a_source_skips_is_said_in_status(world: World, tmp_path: Path) -> None:
    await world.add_pod("p1")
    src = adapters(tmp_path / "src", ["x"])
    (src / "sneaky").symlink_to(src / "x")
    world.apply(cr_object(NS, "a", src))
    await world.reconcile()
    discovered = next(c for c in world.writer.last_status("a").conditions
                      if c.type == "Discovered")
    assert "sneaky" in discovered.message, discovered.message


def demand_spec(**scaling: object) -> dict[str, object]:
    return {"deploymentConfig": {"scaling": {"mode": "Demand", **scaling}}}


def report(world: World, counts: dict[str, int], window: float = 10.0) -> None:
    state = world.reconciler.states[NS]
    known = {name: [w.key for w in ws] for name, ws in state.by_name.items()}
    world.reconciler.signals.report(known, counts, window=window, now=world.clock.monotonic())


async def test_demand_scales_replicas_up_at_once_and_down_slowly(
        world: World, tmp_path: Path) -> None:
    for name in ("p1", "p2", "p3"):
        await world.add_pod(name)
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["hot", "cold"]),
                          **demand_spec(minReplicas=1, maxReplicas=3, targetRequestsPerSecond=5)))
    await world.reconcile()
    placement = world.reconciler.states[NS].schedule.placement  # type: ignore[union-attr]
    assert len(placement[AdapterKey(NS, "a", "hot")]) == 1, "no demand yet: minReplicas"
    report(world, {"hot": 400, "cold": 2, "unknown": 50})
    await world.clock.advance(1)
    await world.reconcile()
    state = world.reconciler.states[NS]
    hot, cold = AdapterKey(NS, "a", "hot"), AdapterKey(NS, "a", "cold")
    assert state.scaled[hot].replicas == 3 and "maxReplicas 3" in state.scaled[hot].reason
    assert state.scaled[cold].replicas == 1
    assert sum("hot" in world.loaded(p) for p in ("p1", "p2", "p3")) == 3
    scaled = next(c for c in world.writer.last_status("a").conditions if c.type == "Scaled")
    assert "hot: 3" in scaled.message and "req/s" not in scaled.message
    writes = len(world.writer.statuses)
    for _ in range(5):  # steady demand: steady placement, no status write
        report(world, {"hot": 400, "cold": 2})
        await world.clock.advance(10)
        await world.reconcile()
    assert len(world.writer.statuses) == writes and state.scaled[hot].replicas == 3
    history = []
    for _ in range(30):  # demand stops; reconciles as often as the controller does them
        requeue = await world.reconcile()
        assert requeue is not None and requeue <= 15, "demand-scaled namespaces are looked at often"
        history.append(state.scaled[hot].replicas)
        await world.clock.advance(15)
    assert history[:8] == [3] * 8, f"down only after the stabilization delay: {history}"
    assert history[-1] == 1 and history == sorted(history, reverse=True), history
    assert sum("hot" in world.loaded(p) for p in ("p1", "p2", "p3")) == 1


async def test_a_lazy_adapter_scales_to_zero_and_comes_back_on_ask(
        world: World, tmp_path: Path) -> None:
    await world.add_pod("p1")
    spec = demand_spec(minReplicas=0, maxReplicas=2)
    spec["deploymentConfig"]["loadOnStartup"] = False  # type: ignore[index]
    world.apply(cr_object(NS, "a", adapters(tmp_path / "src", ["z"]), **spec))
    await world.reconcile()
    key = AdapterKey(NS, "a", "z")
    assert world.reconciler.states[NS].scaled[key].replicas == 0
    asked = world.lazy.request(key)
    await world.reconcile()
    assert await asked is None and "z" in world.loaded("p1")
    for _ in range(3):
        await world.clock.advance(60)
        await world.reconcile()
    assert world.reconciler.states[NS].scaled[key].replicas == 0
    assert "z" not in world.loaded("p1"), "idle past the delay: unloaded"
