"""The exact optimum of small placement problems, to measure the scheduler against.

The scheduler is a greedy algorithm; this module states the problem as an integer program and
solves it exactly with scipy's `milp` (HiGHS), so tests and the benchmark can report how close the
greedy answer comes. The objective is the priority-weighted number of placed replicas, with weights
chosen so that one replica of a priority is worth more than every replica of all lower priorities
together: the same "higher priority first" rule the scheduler follows, so the comparison is fair.

scipy is a test and benchmark dependency, not a runtime one: it is imported only when called.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from lora_controller.scheduler.model import (
    AdapterDemand,
    AdapterKey,
    PodCapacity,
    PodKey,
    PreemptionPolicy,
)

_MI = 1 << 20


def _eligible(adapter: AdapterDemand, pod: PodCapacity) -> bool:
    return (
        pod.ready
        and pod.base_model == adapter.base_model
        and pod.max_lora_rank >= (adapter.rank or 0)
        and pod.adapter_slots - pod.reserved_slots > 0
        and (adapter.eligible_pods is None or pod.key in adapter.eligible_pods)
    )


def _wanted(adapter: AdapterDemand, eligible_pods: int) -> int:
    if adapter.replicas is None:
        return eligible_pods
    return min(adapter.replicas, eligible_pods)


def priority_weights(
    adapters: Sequence[AdapterDemand], pods: Sequence[PodCapacity]
) -> dict[AdapterKey, float]:
    """Per adapter, the value of one placed replica: lexicographic by priority."""
    counts = {a.key: sum(1 for p in pods if _eligible(a, p)) for a in adapters}
    by_level: dict[int, int] = {}
    for adapter in adapters:
        by_level[adapter.priority] = by_level.get(adapter.priority, 0) + _wanted(
            adapter, counts[adapter.key]
        )
    level_weight: dict[int, float] = {}
    below = 0.0
    for level in sorted(by_level):
        level_weight[level] = below + 1.0
        below += level_weight[level] * by_level[level]
    return {a.key: level_weight[a.priority] for a in adapters}


def placed_value(
    placement: Mapping[AdapterKey, Sequence[PodKey]], weights: Mapping[AdapterKey, float]
) -> float:
    """The weighted number of placed replicas of a placement."""
    return sum(weights[key] * len(pods) for key, pods in placement.items() if key in weights)


def optimal_value(
    adapters: Sequence[AdapterDemand],
    pods: Sequence[PodCapacity],
    weights: Mapping[AdapterKey, float],
) -> float:
    """The best weighted number of replicas any placement on empty pods can reach."""
    import numpy as np
    from scipy.optimize import LinearConstraint, milp
    from scipy.sparse import lil_matrix

    pairs = [
        (ai, pi)
        for ai, adapter in enumerate(adapters)
        for pi, pod in enumerate(pods)
        if _eligible(adapter, pod)
    ]
    if not pairs:
        return 0.0
    rows_mem = [pi for pi, pod in enumerate(pods) if pod.memory_capacity_bytes is not None]
    mem_row = {pi: r for r, pi in enumerate(rows_mem)}
    n_rows = len(rows_mem) + len(pods) + len(adapters)
    matrix = lil_matrix((n_rows, len(pairs)))
    upper = np.zeros(n_rows)
    for r, pi in enumerate(rows_mem):
        pod = pods[pi]
        assert pod.memory_capacity_bytes is not None
        # GiB keeps the coefficients small for the solver; the ratio is what matters.
        upper[r] = (pod.memory_capacity_bytes - pod.reserved_memory_bytes) / 2**30
    slot_base = len(rows_mem)
    for pi, pod in enumerate(pods):
        upper[slot_base + pi] = pod.adapter_slots - pod.reserved_slots
    adapter_base = slot_base + len(pods)
    eligible_counts = [sum(1 for p in pods if _eligible(a, p)) for a in adapters]
    for ai, adapter in enumerate(adapters):
        upper[adapter_base + ai] = _wanted(adapter, eligible_counts[ai])
    objective = np.zeros(len(pairs))
    for column, (ai, pi) in enumerate(pairs):
        adapter = adapters[ai]
        if pi in mem_row:
            matrix[mem_row[pi], column] = adapter.memory_bytes / 2**30
        matrix[slot_base + pi, column] = 1
        matrix[adapter_base + ai, column] = 1
        objective[column] = -weights[adapter.key]
    result = milp(
        objective,
        constraints=LinearConstraint(matrix.tocsr(), -np.inf, upper + 1e-9),
        integrality=np.ones(len(pairs)),
        bounds=(0, 1),
    )
    if not result.success:  # pragma: no cover - the empty placement is always feasible
        raise RuntimeError(f"milp failed: {result.message}")
    return float(-result.fun)


def optimality_ratio(
    adapters: Sequence[AdapterDemand],
    pods: Sequence[PodCapacity],
    placement: Mapping[AdapterKey, Sequence[PodKey]],
) -> float:
    """Weighted value of `placement` over the optimum (1.0 when nothing can be placed)."""
    weights = priority_weights(adapters, pods)
    best = optimal_value(adapters, pods, weights)
    if best <= 0:
        return 1.0
    return placed_value(placement, weights) / best


def small_instance(
    rng: random.Random, *, selectors: bool = False
) -> tuple[list[AdapterDemand], list[PodCapacity]]:
    """A small random cluster the integer program solves exactly: 2-6 pods of two base models,
    mixed slots, ranks, capacities (some unknown), readiness, nodes and zones; 1-12 adapters of
    mixed sizes, ranks, priorities, policies and replica counts. With `selectors`, each of two CRs
    matches a random subset of the pods (or all of them)."""
    pods = [
        PodCapacity(
            key=PodKey(f"p{i}"),
            base_model=rng.choice(["a", "a", "b"]),
            adapter_slots=rng.randint(1, 5),
            max_lora_rank=rng.choice([8, 16, 64]),
            memory_capacity_bytes=rng.choice([None, rng.randint(1, 16) * 256 * _MI]),
            node=f"n{rng.randint(0, 3)}",
            zone=f"z{rng.randint(0, 1)}",
            ready=rng.random() > 0.1,
        )
        for i in range(rng.randint(2, 6))
    ]
    eligible: dict[str, frozenset[PodKey] | None] = {"cr": None}
    crs = ["cr"] * 12
    if selectors:
        eligible = {
            cr: frozenset(p.key for p in pods if rng.random() < 0.6) if rng.random() < 0.8
            else None
            for cr in ("cr1", "cr2")
        }
        crs = [rng.choice(["cr1", "cr2"]) for _ in range(12)]
    adapters = [
        AdapterDemand(
            key=AdapterKey("ns", crs[j], f"a{j}"),
            base_model=rng.choice(["a", "a", "b"]),
            memory_bytes=rng.randint(0, 12) * 128 * _MI,
            rank=rng.choice([4, 8, 16, 32, 64]),
            priority=rng.choice([0, 0, 10, 100]),
            replicas=rng.choice([1, 1, 2, 3, None]),
            preemption_policy=rng.choice(list(PreemptionPolicy)),
            eligible_pods=eligible[crs[j]],
        )
        for j in range(rng.randint(1, 12))
    ]
    return adapters, pods
