"""The scale stage: replicas of `scaling.mode: Demand` adapters, from their demand.

Each reconcile turns the demand signals (demand.py) into rates, raised for adapters that pods ran
lately, that wait for a slot on a full pod (one replica more than they hold) or that a router asked
for (`ensure=true`); the scheduler's `ReplicaPlanner` turns rates into replica counts (up at once,
down only after the stabilization delay, at most `maxChangesPerReconcile` changes per resource),
and the place stage places that many. Resources in mode Fixed are untouched: `replicas` as given.
Each adapter's count comes with its reason in words ("4 replicas for 37.2 req/s, maxReplicas 4"),
for the router API and the placement view; status only says how many replicas, not the rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from lora_controller.api.types import DEFAULT_MAX_CHANGES, DEFAULT_TARGET_RPS, LoraAdapter
from lora_controller.reconcile.world import Wanted
from lora_controller.scheduler.model import AdapterKey, PodKey
from lora_controller.scheduler.scaling import ReplicaPlanner, Scaling


@dataclass(frozen=True)
class Scaled:
    """One demand-scaled adapter's replica count and why."""

    replicas: int
    rate: float
    reason: str


def scaling_of(cr: LoraAdapter, eligible: int) -> Scaling:
    """The resource's scaling as the planner takes it (defaults filled in; max at least min)."""
    spec = cr.spec.deployment().scaling
    assert spec is not None
    low = 1 if spec.min_replicas is None else spec.min_replicas
    high = spec.max_replicas if spec.max_replicas is not None else max(eligible, 1)
    target = spec.target_requests_per_second or DEFAULT_TARGET_RPS
    return Scaling(min_replicas=low, max_replicas=max(high, low, 1),
                   target_rps=target if target > 0 else DEFAULT_TARGET_RPS,
                   max_changes=spec.max_changes_per_reconcile or DEFAULT_MAX_CHANGES)


def reason(replicas: int, rate: float, scaling: Scaling) -> str:
    why = f"{replicas} replica(s) for {rate:.1f} req/s (target {scaling.target_rps:g} per replica"
    if replicas >= scaling.max_replicas and rate > replicas * scaling.target_rps:
        why += f", maxReplicas {scaling.max_replicas}"
    elif replicas <= scaling.min_replicas:
        why += f", minReplicas {scaling.min_replicas}"
    return why + ")"


def scale(planner: ReplicaPlanner, wanted: Mapping[AdapterKey, Wanted],
          eligible: Mapping[AdapterKey, frozenset[PodKey]], held: Mapping[AdapterKey, int],
          rates: Mapping[AdapterKey, float], *, short_of_slots: Set[str],
          asked: Set[AdapterKey], now: float) -> dict[AdapterKey, Scaled]:
    """Replicas of every demand-scaled wanted adapter."""
    scaling: dict[AdapterKey, Scaling] = {}
    effective: dict[AdapterKey, float] = {}
    for key, w in wanted.items():
        if not w.cr.spec.deployment().demand_scaled():
            continue
        sc = scaling[key] = scaling_of(w.cr, len(eligible.get(key, ())))
        rate = rates.get(key, 0.0)
        if key.name in short_of_slots:  # waiting for a slot: one replica more than held
            rate = max(rate, (held.get(key, 0) + 1) * sc.target_rps)
        if key in asked:  # asked for, or running on a pod: in use, never scaled to zero
            rate = max(rate, 1.0 / planner.scale_down_delay + 1e-6)
        effective[key] = rate
    if not scaling:
        return {}
    counts = planner.plan(effective, scaling, held, now)
    return {key: Scaled(counts[key], effective[key],
                        reason(counts[key], effective[key], scaling[key])) for key in scaling}
