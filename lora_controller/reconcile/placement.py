"""The place stage: where each wanted adapter should be, given what the pods hold now.

The scheduler starts from the current placement so that what is loaded stays where it is (loads are
not free): the current placement is what the pods report, plus the placements of the last run that
are still in flight (decided, not confirmed yet). Adapters that are not ours take slots and are
never moved. Evictions are remembered while their victim stays short, so its status keeps saying
why it lost its pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from lora_controller.reconcile.planning import DesiredAdapter
from lora_controller.reconcile.refs import PodRef
from lora_controller.reconcile.scaling import scale
from lora_controller.reconcile.snapshot import NamespaceSnapshot
from lora_controller.reconcile.state import NamespaceState
from lora_controller.reconcile.world import Ownership, Wanted, capacities, demands, eligible_sets
from lora_controller.scheduler.model import AdapterKey, PodKey, Schedule

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Demand:
    """The round's demand signals, as the scale stage takes them (demand.py)."""

    rates: Mapping[AdapterKey, float] = field(default_factory=dict)
    short_of_slots: frozenset[str] = frozenset()  # adapter names waiting on a full pod
    in_use: frozenset[str] = frozenset()  # adapter names pods ran or queued lately
    asked: frozenset[AdapterKey] = frozenset()  # lazy adapters a router asked for
    now: float = 0.0


@dataclass(frozen=True)
class CurrentPlacement:
    placement: dict[AdapterKey, tuple[PodKey, ...]]
    foreign: dict[str, int]  # pod name -> adapters on it that are not ours


def current_placement(snapshot: NamespaceSnapshot, own: Ownership,
                      wanted: Mapping[AdapterKey, Wanted],
                      previous: Schedule | None) -> CurrentPlacement:
    """What the pods hold of the wanted adapters, plus last run's placements still in flight."""
    current: dict[AdapterKey, list[PodKey]] = {}
    foreign: dict[str, int] = {}
    for pod in snapshot.pods:
        obs = snapshot.observed(pod.name)
        if obs is None or not obs.ok:
            continue
        for name, root in obs.adapters.items():
            owner = own.owner(pod.ref, name, root)
            if owner is None:
                foreign[pod.name] = foreign.get(pod.name, 0) + 1
                continue
            key = AdapterKey(snapshot.namespace, owner.name, name)
            if key in wanted:
                current.setdefault(key, []).append(PodKey(pod.name))
    if previous is not None:
        present = snapshot.pods_by_name
        for key, placed in previous.placement.items():
            if key in wanted:
                cur = current.setdefault(key, [])
                cur.extend(p for p in placed if p not in cur and p in present)
    return CurrentPlacement({k: tuple(v) for k, v in current.items()}, foreign)


def place(state: NamespaceState, snapshot: NamespaceSnapshot, wanted: Mapping[AdapterKey, Wanted],
          current: CurrentPlacement, demand: Demand) -> Schedule:
    """Scale demand-driven adapters, then place every wanted adapter of the namespace at once,
    and remember the evictions."""
    wanted_models = {c.spec.base_model for c in snapshot.live}
    eligible = eligible_sets(list(wanted.values()), snapshot.pods)
    held = {key: len(pods) for key, pods in current.placement.items()}
    before = state.scaled
    state.scaled = scale(state.planner, wanted, eligible, held, demand.rates,
                         short_of_slots=demand.short_of_slots, asked=demand.asked | {
                             k for k in wanted if k.name in demand.in_use}, now=demand.now)
    for key, scaled in state.scaled.items():
        if key not in before or before[key].replicas != scaled.replicas:
            log.info("replicas follow demand", adapter=str(key), replicas=scaled.replicas,
                     held=held.get(key, 0), why=scaled.reason)
    schedule = state.scheduler.schedule(
        demands(list(wanted.values()), snapshot.pods, eligible=eligible,
                replicas={key: s.replicas for key, s in state.scaled.items()},
                rates=heat_of(state)),
        capacities(snapshot.pods, wanted_models=wanted_models, foreign=current.foreign),
        current.placement,
    )
    for p in schedule.preemptions:
        state.preempted[p.victim] = p
    for victim, p in list(state.preempted.items()):
        if victim not in wanted or p.by not in wanted or victim not in schedule.unplaced:
            del state.preempted[victim]
    state.schedule = schedule
    return schedule


def heat_of(state: NamespaceState) -> dict[AdapterKey, float]:
    """The rates placement sees: coarse (they change only when a rate doubles or halves), so a
    steady demand gives the scheduler the same input and the same placement."""
    coarse = state.heat.update({key: s.rate for key, s in state.scaled.items()})
    return {key: value for key, value in coarse.items() if isinstance(key, AdapterKey)}


def desired_adapters(schedule: Schedule, wanted: Mapping[AdapterKey, Wanted], *,
                     skip: Mapping[AdapterKey, str],
                     active: frozenset[AdapterKey]) -> dict[PodRef, dict[str, DesiredAdapter]]:
    """Per pod, the adapters it should list: the placement, less what could not be staged; lazy
    adapters stay lazy (kept if loaded, not loaded) until a router asks for them (`active`)."""
    desired: dict[PodRef, dict[str, DesiredAdapter]] = {}
    for key, placed in schedule.placement.items():
        w = wanted.get(key)
        if w is None or key in skip:
            continue
        adapter = DesiredAdapter(w.adapter.name, w.path, w.ref, w.lazy and key not in active)
        for pod in placed:
            desired.setdefault(PodRef(key.namespace, pod), {})[w.adapter.name] = adapter
    return desired
