"""Property tests over random clusters: every invariant of the scheduler, on every run.

The clusters mix base models, readiness, ranks, unknown capacities, reserved room, nodes and zones;
the adapters mix priorities, policies, unknown sizes and every-pod replicas. `cluster.check` states
the invariants independently of the scheduler's code.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_controller.scheduler import (
    AdapterDemand,
    AdapterKey,
    PodCapacity,
    PodKey,
    PreemptionPolicy,
    Scheduler,
    schedule,
)
from tests.scheduler.cluster import (
    adapters_strategy,
    check,
    eligible,
    fits,
    pods_strategy,
    selectors,
    usage,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

clusters = st.tuples(adapters_strategy(), pods_strategy())


def _drop_pod(placement: dict[AdapterKey, tuple[PodKey, ...]], lost: PodKey) -> dict[
    AdapterKey, tuple[PodKey, ...]
]:
    return {k: tuple(p for p in v if p != lost) for k, v in placement.items()}


@SETTINGS
@given(clusters)
def test_fresh_placement_keeps_every_invariant(cluster: tuple[list[AdapterDemand], list[PodCapacity]]) -> None:
    adapters, pods = cluster
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    if not result.moves:
        # Nothing placed yet, nothing to evict. (A repair can hand a pod to a lower priority
        # that a higher one may then evict, in the same run.)
        assert result.preemptions == ()


@SETTINGS
@given(clusters, st.randoms(use_true_random=False))
def test_placement_from_any_current_keeps_every_invariant(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]], rnd: random.Random
) -> None:
    # An arbitrary, even invalid or overfull, current placement (what pods may really hold).
    adapters, pods = cluster
    keys = [p.key for p in pods] + [PodKey("gone")]
    current = {a.key: tuple(rnd.sample(keys, rnd.randint(0, min(3, len(keys))))) for a in adapters}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)


@SETTINGS
@given(clusters, st.randoms(use_true_random=False))
def test_deterministic_whatever_the_input_order(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]], rnd: random.Random
) -> None:
    adapters, pods = cluster
    first = schedule(adapters, pods)
    shuffled_adapters, shuffled_pods = adapters[:], pods[:]
    rnd.shuffle(shuffled_adapters)
    rnd.shuffle(shuffled_pods)
    assert schedule(shuffled_adapters, shuffled_pods) == first
    assert schedule(adapters, pods) == first


@SETTINGS
@given(clusters, st.randoms(use_true_random=False))
def test_idempotent(cluster: tuple[list[AdapterDemand], list[PodCapacity]], rnd: random.Random) -> None:
    adapters, pods = cluster
    # Start from a run that had to preempt: part of the adapters first, then all of them.
    early = [a for a in adapters if rnd.random() < 0.5]
    first = schedule(adapters, pods, schedule(early, pods).placement)
    second = schedule(adapters, pods, first.placement)
    assert second.placement == first.placement
    assert second.preemptions == ()
    assert second.moves == ()
    assert {k: (s.wanted, s.placed, s.missing) for k, s in second.unplaced.items()} == {
        k: (s.wanted, s.placed, s.missing) for k, s in first.unplaced.items()
    }


@SETTINGS
@given(clusters, st.randoms(use_true_random=False))
def test_valid_placements_stay(cluster: tuple[list[AdapterDemand], list[PodCapacity]], rnd: random.Random) -> None:
    adapters, pods = cluster
    # A valid current placement: the answer for a subset of the pods and adapters.
    some_pods = [p for p in pods if rnd.random() < 0.7]
    some_adapters = [a for a in adapters if rnd.random() < 0.7]
    current = schedule(some_adapters, some_pods).placement
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    evicted = {(e.victim, e.pod) for e in result.preemptions}
    moved = {(m.adapter, m.from_pod) for m in result.moves}
    for k, before in current.items():
        for p in before:
            assert p in result.placement[k] or (k, p) in evicted | moved, f"{k} moved off {p}"
    # A move only makes room for a replica that was missing: the adapter it serves had fewer
    # replicas than it wants (none, for an every-pod adapter), or lost one to preemption.
    by_key = {a.key: a for a in adapters}
    for m in result.moves:
        by = by_key[m.by]
        held = len(current.get(m.by, ()))
        missing = held == 0 if by.replicas is None else held < by.replicas
        assert missing or any(e.victim == m.by for e in result.preemptions), f"{m}: nothing missing"


@SETTINGS
@given(clusters, st.data())
def test_losing_a_pod_moves_only_its_adapters(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]], data: st.DataObject
) -> None:
    adapters, pods = cluster
    first = schedule(adapters, pods)
    lost = data.draw(st.sampled_from([p.key for p in pods]))
    remaining = [p for p in pods if p.key != lost]
    observed = _drop_pod(dict(first.placement), lost)
    result = schedule(adapters, remaining, observed)
    check(adapters, remaining, result, observed)
    evicted = {(e.victim, e.pod) for e in result.preemptions}
    moved = {(m.adapter, m.from_pod) for m in result.moves}
    for k, before in first.placement.items():
        after = set(result.placement[k])
        for p in before:
            if p != lost:
                assert p in after or (k, p) in evicted | moved, (
                    f"{k} moved off {p} though {lost} was lost"
                )
        if (
            k not in first.unplaced and lost not in before
            and not any(e.victim == k for e in result.preemptions)
            and not any(m.adapter == k for m in result.moves)
        ):
            assert after == set(before), f"{k} changed though it was not on {lost}"
    # Preemptions and moves only serve replicas that the lost pod held, that were already
    # missing, or that were preempted in this run.
    for by in [e.by for e in result.preemptions] + [m.by for m in result.moves]:
        assert lost in first.placement[by] or by in first.unplaced or any(
            by == other.victim for other in result.preemptions
        )


@SETTINGS
@given(clusters, pods_strategy(min_size=1, max_size=1))
def test_adding_a_pod_moves_nothing(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]], extra: list[PodCapacity]
) -> None:
    adapters, pods = cluster
    new_pod = PodCapacity(**{**_fields(extra[0]), "key": PodKey("new")})
    first = schedule(adapters, pods)
    result = schedule(adapters, [*pods, new_pod], first.placement)
    check(adapters, [*pods, new_pod], result, first.placement)
    if not first.unplaced:
        assert result.preemptions == ()
        assert result.moves == ()
        for k, before in first.placement.items():
            after = result.placement[k]
            assert set(before) <= set(after), f"{k} moved"
            assert set(after) - set(before) <= {"new"}
    evicted = {(e.victim, e.pod) for e in result.preemptions}
    moved = {(m.adapter, m.from_pod) for m in result.moves}
    for k, before in first.placement.items():
        assert all(p in result.placement[k] or (k, p) in evicted | moved for p in before)


def _fields(p: PodCapacity) -> dict[str, object]:
    return {name: getattr(p, name) for name in PodCapacity.__dataclass_fields__}


def _node(p: PodCapacity) -> str:
    """A pod without a node label counts as a node of its own; pods without a zone share one."""
    return p.node if p.node is not None else f"pod/{p.key}"


@SETTINGS
@given(clusters, st.data())
def test_spreads_when_it_can(cluster: tuple[list[AdapterDemand], list[PodCapacity]], data: st.DataObject) -> None:
    # On a fresh run, an adapter shares a node (or zone) only if no other pod in a new node
    # (or zone) had room for it: room only shrinks during a run without preemption.
    adapters, pods = cluster
    result = schedule(adapters, pods)
    hosted = usage(adapters, result.placement)
    by_pod = {p.key: p for p in pods}
    for a in adapters:
        placed = [by_pod[p] for p in result.placement[a.key]]
        nodes = [_node(p) for p in placed]
        zones = [p.zone for p in placed]
        if len(set(nodes)) < len(nodes):
            for p in pods:
                if eligible(a, p) and p.key not in result.placement[a.key] and _node(p) not in nodes:
                    assert not fits(a, p, hosted.get(p.key, [])), f"{a.key} shares a node, {p.key} was free"
        if len(set(zones)) < len(zones):
            for p in pods:
                if (
                    eligible(a, p) and p.key not in result.placement[a.key]
                    and p.zone not in zones and _node(p) not in nodes
                ):
                    assert not fits(a, p, hosted.get(p.key, [])), f"{a.key} shares a zone, {p.key} was free"


@SETTINGS
@given(clusters, st.data())
def test_incremental_runs_equal_full_runs(
    cluster: tuple[list[AdapterDemand], list[PodCapacity]], data: st.DataObject
) -> None:
    adapters, pods = cluster
    engine = Scheduler()
    previous = engine.schedule(adapters, pods)
    for _ in range(3):
        # A small change: pods lost or added, adapters removed or added.
        rnd = data.draw(st.randoms(use_true_random=False))
        kept_pods = [p for p in pods if rnd.random() < 0.85]
        lost = {p.key for p in pods} - {p.key for p in kept_pods}
        new_pods = data.draw(pods_strategy(min_size=0, max_size=2))
        new_pods = [
            PodCapacity(**{**_fields(p), "key": PodKey(f"{p.key}-{rnd.randint(0, 10**6)}")})
            for p in new_pods
        ]
        pods = [*kept_pods, *[p for p in new_pods if p.key not in {q.key for q in kept_pods}]]
        # The reconciler recomputes each CR's eligible set: lost pods leave it, and an added pod
        # joins it if the CR's podSelector matches the pod.
        kept_adapters = _follow_pods(
            [a for a in adapters if rnd.random() < 0.85], lost, [p.key for p in new_pods], rnd
        )
        added = data.draw(adapters_strategy(max_size=3))
        new_selector = data.draw(selectors)
        added = [
            AdapterDemand(**{**{n: getattr(a, n) for n in AdapterDemand.__dataclass_fields__},
                             "key": AdapterKey("ns", "new", f"{a.key.name}-{rnd.randint(0, 10**6)}"),
                             "eligible_pods": new_selector})
            for a in added
        ]
        adapters = kept_adapters + [a for a in added if a.key not in {b.key for b in kept_adapters}]
        keys = {a.key for a in adapters}
        observed = {
            k: tuple(p for p in v if p not in lost) for k, v in previous.placement.items() if k in keys
        }
        result = engine.schedule(adapters, pods, observed)
        full = schedule(adapters, pods, observed)
        assert result == full, f"incremental={engine.incremental}"
        check(adapters, pods, result, observed)
        previous = result


def _follow_pods(
    adapters: list[AdapterDemand], lost: set[PodKey], added: list[PodKey], rnd: random.Random
) -> list[AdapterDemand]:
    """New demands whose eligible sets lost `lost` and, per CR, maybe gained some of `added`
    (one new set object per CR, as the reconciler builds them)."""
    new_sets: dict[int, frozenset[PodKey]] = {}
    out = []
    for a in adapters:
        old = a.eligible_pods
        if old is None or (not lost & old and not added):
            out.append(a)
            continue
        new = new_sets.get(id(old))
        if new is None:
            new = new_sets[id(old)] = (old - lost) | {k for k in added if rnd.random() < 0.5}
        out.append(AdapterDemand(
            **{**{n: getattr(a, n) for n in AdapterDemand.__dataclass_fields__}, "eligible_pods": new}
        ))
    return out


def test_policies_cover_both() -> None:
    # The strategies above draw both policies; keep that true if someone edits them.
    assert set(PreemptionPolicy) == {PreemptionPolicy.LOWER_PRIORITY, PreemptionPolicy.NONE}
