"""A dry run: what applying some LoraAdapters would do, by the same stages as a reconcile.

The namespace is read as a reconcile reads it, the given resources replace (or join) the cached
ones of the same name, and discover, select, place and plan run unchanged, except that nothing is
written, staged or loaded: the answer is the loads, unloads and evictions the controller would
make, and what could not be placed and why. Sources of the given resources are read through a
throwaway discovery cache, so a dry run never changes what the controller remembers; placement
runs on a fresh scheduler from the same current placement (the scheduler's incremental answer
equals a full run's, a property test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from lora_controller.api.types import LoraAdapter
from lora_controller.reconcile.discovering import DiscoveryCache, DiscoveryState, discover_all
from lora_controller.reconcile.ledger import Ledger
from lora_controller.reconcile.placement import (
    CurrentPlacement,
    current_placement,
    desired_adapters,
)
from lora_controller.reconcile.planning import Plan, plan
from lora_controller.reconcile.refs import CrRef
from lora_controller.reconcile.scaling import Scaled
from lora_controller.reconcile.snapshot import NamespaceSnapshot
from lora_controller.reconcile.wanting import Selection, StorePath, select
from lora_controller.reconcile.world import capacities, demands, ownership
from lora_controller.scheduler import Scheduler
from lora_controller.scheduler.model import AdapterKey, Schedule


@dataclass(frozen=True)
class DryRun:
    namespace: str
    discoveries: Mapping[CrRef, DiscoveryState]
    selection: Selection
    current: CurrentPlacement
    schedule: Schedule
    plan: Plan


def with_changes(snapshot: NamespaceSnapshot, changes: Sequence[LoraAdapter]) -> NamespaceSnapshot:
    """The snapshot with `changes` in place of the live resources of the same name."""
    names = {c.metadata.name for c in changes}
    live = tuple(c for c in snapshot.live if c.metadata.name not in names) + tuple(changes)
    return replace(snapshot, live=tuple(sorted(live, key=lambda c: c.metadata.name)))


async def dry_run(snapshot: NamespaceSnapshot, changes: Sequence[LoraAdapter], *,
                  discovery: DiscoveryCache, store_root: str, store_path: StorePath,
                  previous: Schedule | None, ledger: Ledger | None,
                  scaled: Mapping[AdapterKey, Scaled] | None = None) -> DryRun:
    """Discover, select, place and plan `changes` against `snapshot`; nothing is written.
    Demand-scaled adapters keep the replicas the last reconcile gave them (`scaled`)."""
    snapshot = with_changes(snapshot, changes)
    changed = {c.metadata.name for c in changes}
    scratch = DiscoveryCache(secrets=discovery.secrets, ttl=0, options=discovery.options,
                             clock=discovery.clock, discover_fn=discovery.discover_fn)
    discoveries = {
        **await discover_all(discovery, [c for c in snapshot.live
                                         if c.metadata.name not in changed]),
        **await discover_all(scratch, [c for c in snapshot.live if c.metadata.name in changed]),
    }
    selection = select(snapshot.live, {ref: d.discovery for ref, d in discoveries.items()},
                       snapshot.pods, store_path)
    own = ownership(snapshot.crs, store_root=store_root, namespace=snapshot.namespace,
                    wanted=list(selection.wanted.values()),
                    ledger=ledger.entries if ledger else None)
    current = current_placement(snapshot, own, selection.wanted, previous)
    wanted_models = {c.spec.base_model for c in snapshot.live}
    schedule = Scheduler().schedule(
        demands(list(selection.wanted.values()), snapshot.pods,
                replicas={k: s.replicas for k, s in (scaled or {}).items()},
                rates={k: s.rate for k, s in (scaled or {}).items()}),
        capacities(snapshot.pods, wanted_models=wanted_models, foreign=current.foreign),
        current.placement)
    desired = desired_adapters(schedule, selection.wanted, skip={}, active=frozenset())
    the_plan = plan(desired=desired, observed=snapshot.readable, managed=own.owner,
                    protected={p.ref: frozenset(p.startup_adapters) for p in snapshot.pods})
    return DryRun(snapshot.namespace, discoveries, selection, current, schedule, the_plan)
