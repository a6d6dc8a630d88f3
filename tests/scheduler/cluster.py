"""Builders for scheduler tests, and an independent checker of the scheduler's invariants.

The checker re-derives every rule from the inputs and the answer alone, without the scheduler's
internal state, so a property test that uses it cannot pass by sharing the scheduler's mistakes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from hypothesis import strategies as st

from lora_controller.scheduler import (
    AdapterDemand,
    AdapterKey,
    Move,
    PodCapacity,
    PodKey,
    PreemptionPolicy,
    Schedule,
)

MI = 1 << 20
GI = 1 << 30


def key(name: str, *, namespace: str = "ns", cr: str = "cr") -> AdapterKey:
    return AdapterKey(namespace, cr, name)


def pod(
    name: str,
    *,
    base_model: str = "llama",
    slots: int = 8,
    rank: int = 64,
    memory: int | None = 4 * GI,
    ready: bool = True,
    node: str | None = None,
    zone: str | None = None,
    reserved_slots: int = 0,
    reserved_memory: int = 0,
) -> PodCapacity:
    return PodCapacity(
        key=PodKey(name),
        base_model=base_model,
        adapter_slots=slots,
        max_lora_rank=rank,
        memory_capacity_bytes=memory,
        ready=ready,
        node=node if node is not None else f"node-{name}",
        zone=zone,
        reserved_slots=reserved_slots,
        reserved_memory_bytes=reserved_memory,
    )


def adapter(
    name: str,
    *,
    base_model: str = "llama",
    memory: int = 100 * MI,
    rank: int | None = 16,
    priority: int = 0,
    policy: PreemptionPolicy = PreemptionPolicy.LOWER_PRIORITY,
    replicas: int | None = 1,
    cr: str = "cr",
    eligible: Iterable[str] | None = None,
) -> AdapterDemand:
    return AdapterDemand(
        key=key(name, cr=cr),
        base_model=base_model,
        memory_bytes=memory,
        rank=rank,
        priority=priority,
        preemption_policy=policy,
        replicas=replicas,
        eligible_pods=None if eligible is None else frozenset(PodKey(p) for p in eligible),
    )


# ------------------------------------------------------------------------------------------------
# Random clusters


@st.composite
def pods_strategy(draw: st.DrawFn, *, min_size: int = 1, max_size: int = 8) -> list[PodCapacity]:
    count = draw(st.integers(min_size, max_size))
    out = []
    for i in range(count):
        memory = draw(st.one_of(st.none(), st.integers(0, 12).map(lambda n: n * 256 * MI)))
        out.append(
            PodCapacity(
                key=PodKey(f"p{i}"),
                base_model=draw(st.sampled_from(["a", "a", "b"])),
                adapter_slots=draw(st.integers(0, 5)),
                max_lora_rank=draw(st.sampled_from([8, 16, 64])),
                memory_capacity_bytes=memory,
                ready=draw(st.booleans().map(lambda b: b or draw(st.booleans()))),
                node=draw(st.sampled_from([None, "n0", "n1", "n2", "n3"])),
                zone=draw(st.sampled_from([None, "z0", "z1"])),
                reserved_slots=draw(st.sampled_from([0, 0, 0, 1])),
                reserved_memory_bytes=draw(st.sampled_from([0, 0, 128 * MI])),
            )
        )
    return out


POD_KEYS = [PodKey(f"p{i}") for i in range(9)]
"""Keys `pods_strategy` draws from (and one more it never draws): what eligible sets pick from."""

selectors = st.one_of(st.none(), st.frozensets(st.sampled_from(POD_KEYS)))
"""A CR's eligible pods: every pod, or a random subset (unknown keys included)."""


@st.composite
def adapters_strategy(draw: st.DrawFn, *, max_size: int = 14) -> list[AdapterDemand]:
    count = draw(st.integers(0, max_size))
    # One eligible set object per CR, as the reconciler passes them.
    eligible = {cr: draw(selectors) for cr in ("c1", "c2")}
    out = []
    for j in range(count):
        cr = draw(st.sampled_from(["c1", "c2"]))
        out.append(AdapterDemand(
            key=AdapterKey("ns", cr, f"a{j}"),
            base_model=draw(st.sampled_from(["a", "a", "b", "c"])),
            memory_bytes=draw(st.integers(0, 8)) * 128 * MI,
            rank=draw(st.sampled_from([None, 4, 8, 16, 32, 64])),
            priority=draw(st.sampled_from([0, 0, 1, 5, 10])),
            preemption_policy=draw(st.sampled_from(list(PreemptionPolicy))),
            replicas=draw(st.sampled_from([None, 0, 1, 1, 2, 3])),
            eligible_pods=eligible[cr],
        ))
    return out


# ------------------------------------------------------------------------------------------------
# The independent checker


def selected(a: AdapterDemand, p: PodCapacity) -> bool:
    """Does `a`'s podSelector match `p` (None: every pod)?"""
    return a.eligible_pods is None or p.key in a.eligible_pods


def eligible(a: AdapterDemand, p: PodCapacity) -> bool:
    """May `a` be placed anew on `p`?"""
    return (
        p.ready and p.base_model == a.base_model and p.max_lora_rank >= (a.rank or 0)
        and selected(a, p)
    )


def usage(
    adapters: Sequence[AdapterDemand], placement: Mapping[AdapterKey, Sequence[PodKey]]
) -> dict[PodKey, list[AdapterDemand]]:
    by_key = {a.key: a for a in adapters}
    out: dict[PodKey, list[AdapterDemand]] = {}
    for k, pods in placement.items():
        for p in pods:
            out.setdefault(p, []).append(by_key[k])
    return out


def free_room(p: PodCapacity, hosted: Sequence[AdapterDemand]) -> tuple[float, int]:
    mem: float = (
        float("inf")
        if p.memory_capacity_bytes is None
        else p.memory_capacity_bytes - p.reserved_memory_bytes - sum(a.memory_bytes for a in hosted)
    )
    return mem, p.adapter_slots - p.reserved_slots - len(hosted)


def fits(a: AdapterDemand, p: PodCapacity, hosted: Sequence[AdapterDemand]) -> bool:
    mem, slots = free_room(p, hosted)
    return slots >= 1 and mem >= a.memory_bytes


def fits_by_evicting_lower(a: AdapterDemand, p: PodCapacity, hosted: Sequence[AdapterDemand]) -> bool:
    keep = [h for h in hosted if h.priority >= a.priority]
    return fits(a, p, keep)


def check(
    adapters: Sequence[AdapterDemand],
    pods: Sequence[PodCapacity],
    result: Schedule,
    current: Mapping[AdapterKey, Sequence[PodKey]] | None = None,
) -> None:
    """Assert every invariant of a schedule; raise AssertionError naming the broken one."""
    by_pod = {p.key: p for p in pods}
    by_key = {a.key: a for a in adapters}
    assert set(result.placement) == set(by_key), "placement must list exactly the adapters asked for"
    _check_placed(by_key, by_pod, result, current or {})
    hosted = usage(adapters, result.placement)
    for pk, items in hosted.items():
        mem, slots = free_room(by_pod[pk], items)
        assert mem >= 0, f"pod {pk} memory exceeded by {-mem} bytes"
        assert slots >= 0, f"pod {pk} slots exceeded"
    _check_shortfalls(by_key, result)
    # Maximality and priority: a missing replica fits nowhere, even by evicting lower priorities
    # when its policy allows it.
    for k in result.unplaced:
        a = by_key[k]
        for p in pods:
            if eligible(a, p) and p.key not in result.placement[k]:
                _assert_no_room(a, p, hosted.get(p.key, []), "left short")
    # Adapters on every pod: every eligible pod holds it or has no room for it.
    for a in adapters:
        if a.replicas is not None:
            continue
        for p in pods:
            if eligible(a, p) and p.key not in result.placement[a.key]:
                _assert_no_room(a, p, hosted.get(p.key, []), "wants every pod but skipped")
    _check_no_repair_left(by_key, pods, result, hosted)
    for m in result.moves:
        check_move(m, by_key, by_pod)
    _check_preemptions(by_key, result)


def _check_placed(
    by_key: Mapping[AdapterKey, AdapterDemand],
    by_pod: Mapping[PodKey, PodCapacity],
    result: Schedule,
    current: Mapping[AdapterKey, Sequence[PodKey]],
) -> None:
    """Every replica is on a pod that may hold it, at most one per pod, at most as many as wanted."""
    for k, placed in result.placement.items():
        a = by_key[k]
        assert list(placed) == sorted(set(placed)), f"{k}: pods not unique and sorted: {placed}"
        if a.replicas is not None:
            assert len(placed) <= a.replicas, f"{k}: more replicas than wanted"
        before = set(current.get(k, ()))
        for pk in placed:
            p = by_pod.get(pk)
            assert p is not None, f"{k} placed on unknown pod {pk}"
            assert p.base_model == a.base_model, f"{k} on pod {pk} of another base model"
            assert p.max_lora_rank >= (a.rank or 0), f"{k} rank above pod {pk}'s max-lora-rank"
            assert selected(a, p), f"{k} on pod {pk}, which its podSelector does not match"
            assert pk in before or p.ready, f"{k} newly placed on not-Ready pod {pk}"


def _check_shortfalls(by_key: Mapping[AdapterKey, AdapterDemand], result: Schedule) -> None:
    """Exactly the adapters with missing replicas are unplaced, one reason per missing replica."""
    for k, a in by_key.items():
        placed = len(result.placement[k])
        short = (placed == 0) if a.replicas is None else placed < a.replicas
        if not short:
            assert k not in result.unplaced, f"{k} is fully placed but listed as unplaced"
            continue
        shortfall = result.unplaced.get(k)
        assert shortfall is not None, f"{k} is short but has no shortfall"
        assert shortfall.placed == placed
        missing = 1 if a.replicas is None else a.replicas - placed
        assert shortfall.missing == missing, f"{k}: {shortfall.missing} reasons for {missing} missing"
        assert all(r.strip() for r in shortfall.reasons)


def _assert_no_room(a: AdapterDemand, p: PodCapacity, items: list[AdapterDemand], what: str) -> None:
    """`a` does not fit on `p`, nor by evicting lower priorities when its policy allows it."""
    assert not fits(a, p, items), f"{a.key} {what} although pod {p.key} has room"
    if a.preemption_policy is PreemptionPolicy.LOWER_PRIORITY:
        assert not fits_by_evicting_lower(a, p, items), (
            f"{a.key} (priority {a.priority}) {what} although evicting lower priorities "
            f"on pod {p.key} would make room"
        )


def _check_no_repair_left(
    by_key: Mapping[AdapterKey, AdapterDemand],
    pods: Sequence[PodCapacity],
    result: Schedule,
    hosted: Mapping[PodKey, list[AdapterDemand]],
) -> None:
    """One-move repair: no missing replica could get a pod by moving one replica R (never larger
    than it) from a pod P it may use to another pod Q with room for R."""
    for k in result.unplaced:
        a = by_key[k]
        for p in pods:
            if not eligible(a, p) or p.key in result.placement[k]:
                continue
            items = hosted.get(p.key, [])
            for r in items:
                if r.memory_bytes > a.memory_bytes:
                    continue
                if not fits(a, p, [h for h in items if h is not r]):
                    continue
                for q in pods:
                    if q.key != p.key and eligible(r, q) and q.key not in result.placement[r.key]:
                        assert not fits(r, q, hosted.get(q.key, [])), (
                            f"{k} left short although moving {r.key} from {p.key} to {q.key} "
                            f"would make room"
                        )


def _check_preemptions(by_key: Mapping[AdapterKey, AdapterDemand], result: Schedule) -> None:
    """Preemptions: by LowerPriority adapters of strictly higher priority, which then hold the pod."""
    for e in result.preemptions:
        victim, by = by_key[e.victim], by_key[e.by]
        assert by.preemption_policy is PreemptionPolicy.LOWER_PRIORITY, f"{e}: policy None evicted"
        assert victim.priority < by.priority, f"{e}: victim not of strictly lower priority"
        assert (e.victim_priority, e.by_priority) == (victim.priority, by.priority)
        assert e.pod in result.placement[e.by] or any(
            (o.victim, o.pod) == (e.by, e.pod) for o in result.preemptions
        ), f"{e}: evictor not on the pod (nor preempted there in turn)"
        assert e.pod not in result.placement[e.victim], f"{e}: victim still on the pod"


def check_move(m: Move, by_key: Mapping[AdapterKey, AdapterDemand],
               by_pod: Mapping[PodKey, PodCapacity]) -> None:
    """A repair move goes between two Ready pods of the base model that both adapters may use."""
    moved, by = by_key[m.adapter], by_key[m.by]
    source, target = by_pod[m.from_pod], by_pod[m.to_pod]
    assert m.from_pod != m.to_pod and m.adapter != m.by, f"{m}: not a move"
    assert eligible(by, source), f"{m}: {m.by} may not use {m.from_pod}"
    assert eligible(moved, target), f"{m}: {m.adapter} may not use {m.to_pod}"
    assert moved.memory_bytes <= by.memory_bytes, f"{m}: moved a larger adapter"
