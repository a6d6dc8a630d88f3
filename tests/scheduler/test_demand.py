"""Demand-aware placement (heat.py): properties over random clusters, and the policy on small cases.

The invariants of `cluster.check` (capacity, base model, rank, selectors, maximality, one-move
repairs, preemption) hold with demand as without; without demand the answer is today's exactly;
the incremental path equals a full run when replica counts and rates change; a steady demand
settles and then nothing moves; a run rebalances at most its limit.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_controller.scheduler import (
    AdapterDemand,
    AdapterKey,
    PodCapacity,
    PodKey,
    Schedule,
    Scheduler,
    schedule,
)
from tests.scheduler.cluster import (
    MI,
    adapter,
    adapters_strategy,
    check,
    eligible,
    pod,
    pods_strategy,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RATES = st.sampled_from([0.0, 0.0, 0.05, 0.5, 1.0, 2.0, 5.0, 20.0])


@st.composite
def demand_clusters(draw: st.DrawFn) -> tuple[list[AdapterDemand], list[PodCapacity]]:
    adapters = [dataclasses.replace(a, demand_rps=draw(RATES)) for a in draw(adapters_strategy())]
    pods = [dataclasses.replace(p, active_slots=draw(st.sampled_from([None, 1, 2, 3])))
            for p in draw(pods_strategy())]
    return adapters, pods


def _check_rebalanced(adapters: list[AdapterDemand], pods: list[PodCapacity], result: Schedule,
                      before: dict[AdapterKey, tuple[PodKey, ...]]) -> None:
    by_key = {a.key: a for a in adapters}
    by_pod = {p.key: p for p in pods}
    for m in result.rebalanced:
        assert m.by == m.adapter and m.from_pod != m.to_pod
        assert eligible(by_key[m.adapter], by_pod[m.to_pod]), f"{m}: target not eligible"
        assert m.from_pod in before.get(m.adapter, ()), f"{m}: the adapter was not on the source"


@SETTINGS
@given(st.tuples(adapters_strategy(), pods_strategy()), st.data())
def test_without_demand_the_placement_is_todays(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]], data: st.DataObject
) -> None:
    adapters, pods = cluster
    today = schedule(adapters, pods)
    # Pods that say their active slots, adapters without demand: no change, fresh or from any
    # current placement, in one run or along a Scheduler's incremental runs.
    active = [dataclasses.replace(p, active_slots=data.draw(st.sampled_from([None, 1, 4])))
              for p in pods]
    assert schedule(adapters, active) == today
    assert today.rebalanced == ()
    rnd = data.draw(st.randoms(use_true_random=False))
    keys = [p.key for p in pods]
    current = {a.key: tuple(rnd.sample(keys, rnd.randint(0, min(2, len(keys))))) for a in adapters}
    assert schedule(adapters, active, current) == schedule(adapters, pods, current)
    engine, plain = Scheduler(), Scheduler()
    for observed in (None, today.placement):
        fewer = [p for p in active if rnd.random() < 0.8]
        same = [p for p in pods if p.key in {q.key for q in fewer}]
        seen = None if observed is None else {
            k: tuple(x for x in v if x in {q.key for q in fewer}) for k, v in observed.items()}
        assert engine.schedule(adapters, fewer, seen) == plain.schedule(adapters, same, seen)


@SETTINGS
@given(demand_clusters(), st.randoms(use_true_random=False))
def test_demand_keeps_every_invariant(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]], rnd: random.Random
) -> None:
    adapters, pods = cluster
    keys = [p.key for p in pods]
    current = {a.key: tuple(rnd.sample(keys, rnd.randint(0, min(3, len(keys))))) for a in adapters}
    engine = Scheduler(rebalance_limit=2)
    result = engine.schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert len(result.rebalanced) <= 2
    _check_rebalanced(adapters, pods, result, current)
    again = engine.schedule(adapters, pods, result.placement)
    check(adapters, pods, again, result.placement)
    assert len(again.rebalanced) <= 2
    _check_rebalanced(adapters, pods, again, dict(result.placement))


@SETTINGS
@given(demand_clusters(), st.data())
def test_incremental_runs_equal_full_runs_when_demand_changes(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]], data: st.DataObject
) -> None:
    adapters, pods = cluster
    engine = Scheduler()
    previous = engine.schedule(adapters, pods)
    for _ in range(4):
        rnd = data.draw(st.randoms(use_true_random=False))
        # A reconcile's demand update: some rates and some replica counts change; maybe a pod goes.
        adapters = [
            dataclasses.replace(
                a,
                demand_rps=data.draw(RATES) if rnd.random() < 0.4 else a.demand_rps,
                replicas=(rnd.choice([0, 1, 2, 3]) if a.replicas is not None and rnd.random() < 0.3
                          else a.replicas),
            ) if rnd.random() < 0.5 else a
            for a in adapters
        ]
        lost = {p.key for p in pods if rnd.random() < 0.1}
        pods = [p for p in pods if p.key not in lost]
        adapters = [dataclasses.replace(a, eligible_pods=a.eligible_pods - lost)
                    if a.eligible_pods is not None and a.eligible_pods & lost else a for a in adapters]
        observed = {k: tuple(p for p in v if p not in lost) for k, v in previous.placement.items()}
        result = engine.schedule(adapters, pods, observed)
        assert result == schedule(adapters, pods, observed), f"incremental={engine.incremental}"
        check(adapters, pods, result, observed)
        previous = result


@SETTINGS
@given(demand_clusters())
def test_a_steady_demand_settles_and_then_nothing_moves(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]],
) -> None:
    adapters, pods = cluster
    engine = Scheduler(rebalance_limit=1)
    result = engine.schedule(adapters, pods)
    replicas = sum(len(v) for v in result.placement.values())
    # Each run moves at most one replica, into its role: a fixpoint comes within a run per replica.
    for _ in range(replicas + 3):
        previous, result = result, engine.schedule(adapters, pods, result.placement)
        if result.placement == previous.placement and not result.rebalanced:
            break
    assert result.placement == previous.placement and not result.rebalanced, "not settled"
    for _ in range(2):
        again = engine.schedule(adapters, pods, result.placement)
        assert again.placement == result.placement
        assert (again.moves, again.preemptions, again.rebalanced) == ((), (), ())


def test_hot_adapters_get_pods_whose_active_slots_they_fit_and_cold_ones_share_a_sink() -> None:
    # 4 pods, 2 running at once and 8 registered each; 10 adapters, demand 10..1. Three pods can
    # stay clean while the fourth holds the rest: the 6 hottest, 2 a pod; the 4 coldest together.
    pods = [dataclasses.replace(pod(f"p{i}", slots=8), active_slots=2) for i in range(4)]
    adapters = [dataclasses.replace(adapter(f"a{j}", memory=100 * MI), demand_rps=float(10 - j))
                for j in range(10)]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    on = result.pod_adapters
    hot = {AdapterKey("ns", "cr", f"a{j}") for j in range(6)}
    for held in on.values():
        if set(held) & hot:
            assert len(held) <= 2 and set(held) <= hot, f"hot adapters share with others: {held}"
    assert sorted(len(v) for v in on.values()) == [2, 2, 2, 4]


def test_an_adapter_that_turns_hot_takes_the_place_of_a_lukewarm_one() -> None:
    pods = [dataclasses.replace(pod(f"p{i}", slots=8), active_slots=2) for i in range(4)]
    adapters = [dataclasses.replace(adapter(f"a{j}", memory=100 * MI), demand_rps=float(10 - j))
                for j in range(10)]
    engine = Scheduler()
    first = engine.schedule(adapters, pods)
    a5, a9 = AdapterKey("ns", "cr", "a5"), AdapterKey("ns", "cr", "a9")
    (sink,) = first.placement[a9]
    (clean,) = first.placement[a5]
    assert len(first.pod_adapters[sink]) == 4 and len(first.pod_adapters[clean]) == 2
    # a9 becomes the hottest: a5 (now 7th, below theta, at most half as hot) gives up its slot.
    changed = [dataclasses.replace(a, demand_rps=50.0) if a.key == a9 else a for a in adapters]
    second = engine.schedule(changed, pods, first.placement)
    assert second == schedule(changed, pods, first.placement)
    assert [(m.adapter, m.from_pod) for m in second.rebalanced] == [(a5, clean), (a9, sink)]
    assert second.placement[a5] == (sink,) and second.placement[a9] == (clean,)
    check(changed, pods, second, first.placement)
    # And then it stays.
    third = engine.schedule(changed, pods, second.placement)
    assert third.placement == second.placement and third.rebalanced == ()


def test_replica_changes_take_the_incremental_path() -> None:
    pods = [dataclasses.replace(pod(f"p{i}", slots=8), active_slots=2) for i in range(6)]
    adapters = [dataclasses.replace(adapter(f"a{j}", memory=100 * MI), demand_rps=float(j + 1))
                for j in range(12)]
    engine = Scheduler()
    first = engine.schedule(adapters, pods)
    more = [dataclasses.replace(a, replicas=3) if a.key.name == "a11" else a for a in adapters]
    second = engine.schedule(more, pods, first.placement)
    assert engine.incremental
    assert len(second.placement[AdapterKey("ns", "cr", "a11")]) == 3
    fewer = [dataclasses.replace(a, replicas=1) if a.key.name == "a11" else a for a in more]
    third = engine.schedule(fewer, pods, second.placement)
    assert engine.incremental
    assert third == schedule(fewer, pods, second.placement)
    assert set(third.placement[AdapterKey("ns", "cr", "a11")]) < set(
        second.placement[AdapterKey("ns", "cr", "a11")])
