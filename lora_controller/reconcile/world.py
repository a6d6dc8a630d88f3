"""One namespace's world, turned into scheduler input and back (pure).

Capacity and priorities are global across the LoraAdapters of a namespace (pods belong to one
namespace, and a resource selects pods in its own namespace), so the controller places a whole
namespace at once; the scheduler knows pods by name. This module builds the scheduler's input from
the resources, their discoveries, the pods and what the pods report, and decides which adapters
on a pod are ours:

- an adapter is **ours** (managed) when the ownership ledger records it on that pod with that root
  (ledger.py: whatever this controller loaded, across restarts), or its `root` lies under the
  adapter store, or under the local repository of one of the namespace's resources, or a
  resource's status records it on that pod; the owner is the resource recorded, or the one that
  declares that name;
- everything else on a pod is **foreign** (`--lora-modules`, loaded by hand): it takes a slot and
  is never moved, reloaded or unloaded.

Paths are normalised before they are compared, so `STORE/ns/x/../../etc` is not under the store.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from lora_controller.api.types import LoraAdapter, SourceType
from lora_controller.core.quantity import parse_quantity
from lora_controller.reconcile.pods import TargetPod, selector_matches
from lora_controller.reconcile.refs import CrRef, PodRef
from lora_controller.scheduler.model import AdapterDemand, AdapterKey, PodCapacity, PodKey
from lora_controller.sources.model import DiscoveredAdapter


@dataclass(frozen=True, slots=True)
class Wanted:
    """One discovered adapter of one resource, as the controller will serve it (one per adapter
    of the fleet: slots, no instance dictionary)."""

    cr: LoraAdapter
    adapter: DiscoveredAdapter
    path: str  # where vLLM reads it: local path, or its folder in the adapter store
    staged: bool  # the files are where `path` says (local adapters always are)

    @property
    def key(self) -> AdapterKey:
        return AdapterKey(self.cr.metadata.namespace, self.cr.metadata.name, self.adapter.name)

    @property
    def ref(self) -> CrRef:
        return CrRef(self.cr.metadata.namespace, self.cr.metadata.name)

    @property
    def lazy(self) -> bool:
        return not self.cr.spec.deployment().load_on_startup


def _parts_under(path: str | None, root: str) -> tuple[str, ...] | None:
    """The parts of normalised `path` below normalised `root`, or None when it is not below."""
    if not path or not root:
        return None
    normal = PurePosixPath(posixpath.normpath(path))
    base = PurePosixPath(posixpath.normpath(root))
    if not normal.is_relative_to(base):
        return None
    return normal.relative_to(base).parts


@dataclass
class Ownership:
    """Answers "is this adapter on this pod ours, and whose?"."""

    store_root: str
    namespace: str
    local_roots: dict[str, str] = field(default_factory=dict)  # cr name -> local repository
    names: dict[str, CrRef] = field(default_factory=dict)  # adapter name -> owning resource
    recorded: dict[tuple[str, str], CrRef] = field(default_factory=dict)  # (pod name, adapter)
    ledger: Mapping[tuple[str, str], tuple[str | None, str]] = field(default_factory=dict)
    """The ownership ledger's entries (ledger.py): (pod name, adapter) -> (root, resource name)."""

    @property
    def unknown(self) -> CrRef:
        """The owner of an adapter under the store that no resource declares any more."""
        return CrRef(self.namespace, "")

    def owner(self, pod: PodRef, name: str, root: str | None) -> CrRef | None:
        entry = self.ledger.get((pod.name, name))
        if entry is not None and entry[0] == root:
            return CrRef(self.namespace, entry[1])
        recorded = self.recorded.get((pod.name, name))
        if recorded is not None:
            return recorded
        parts = _parts_under(root, self.store_root)
        if parts is not None:
            if len(parts) >= 2 and parts[0] == self.namespace:
                return CrRef(self.namespace, parts[1])
            return self.names.get(name, self.unknown)
        for cr, local in self.local_roots.items():
            if _parts_under(root, local) is not None:
                return CrRef(self.namespace, cr)
        return None


def ownership(crs: Sequence[LoraAdapter], *, store_root: str, namespace: str,
              wanted: Sequence[Wanted],
              ledger: Mapping[tuple[str, str], tuple[str | None, str]] | None = None) -> Ownership:
    own = Ownership(store_root=store_root, namespace=namespace, ledger=ledger or {})
    for cr in crs:
        src = cr.spec.adapter_source
        if src.type is SourceType.LOCAL:
            own.local_roots[cr.metadata.name] = src.repository
        for assignment in (cr.status.pod_assignments if cr.status else []):
            for name in assignment.adapters:
                own.recorded.setdefault((assignment.pod, name), CrRef.of(cr))
    for w in wanted:
        own.names.setdefault(w.adapter.name, w.ref)
    return own


def adapter_memory(cr: LoraAdapter, adapter: DiscoveredAdapter) -> int:
    req = cr.spec.scheduling().resource_requirements
    if req is not None and req.memory:
        if isinstance(req.memory, int):
            return req.memory
        try:
            return parse_quantity(req.memory)
        except ValueError:
            pass
    return adapter.weights_bytes


def eligible_pods(cr: LoraAdapter, pods: Sequence[TargetPod]) -> frozenset[PodKey]:
    """The pods a resource may use: its podSelector matches and they serve its base model."""
    selector = cr.spec.deployment().pod_selector
    return frozenset(PodKey(p.name) for p in pods
                     if p.serves(cr.spec.base_model) and selector_matches(selector, p.labels))


def eligible_sets(wanted: Sequence[Wanted],
                  pods: Sequence[TargetPod]) -> dict[AdapterKey, frozenset[PodKey]]:
    """Each adapter's eligible pods: one set object per resource (the scheduler caches per set)."""
    per_cr: dict[CrRef, frozenset[PodKey]] = {}
    out = {}
    for w in wanted:
        if w.ref not in per_cr:
            per_cr[w.ref] = eligible_pods(w.cr, pods)
        out[w.key] = per_cr[w.ref]
    return out


def demands(wanted: Sequence[Wanted], pods: Sequence[TargetPod], *,
            replicas: Mapping[AdapterKey, int] | None = None,
            rates: Mapping[AdapterKey, float] | None = None,
            eligible: Mapping[AdapterKey, frozenset[PodKey]] | None = None) -> list[AdapterDemand]:
    """Scheduler demands: each adapter with its resource's priority, policy, replicas and pods;
    `replicas` and `rates` are those of demand-scaled adapters (others: as the resource says,
    and no rate, so that their placement is exactly what it was before demand existed)."""
    eligible = eligible if eligible is not None else eligible_sets(wanted, pods)
    replicas = replicas or {}
    rates = rates or {}
    out: list[AdapterDemand] = []
    for w in wanted:
        cr = w.cr
        sched = cr.spec.scheduling()
        out.append(AdapterDemand(
            key=w.key,
            base_model=cr.spec.base_model,
            memory_bytes=adapter_memory(cr, w.adapter),
            rank=w.adapter.rank,
            priority=sched.priority,
            preemption_policy=sched.preemption_policy,
            replicas=replicas.get(w.key, cr.spec.deployment().replicas),
            eligible_pods=eligible[w.key],
            demand_rps=rates.get(w.key, 0.0),
        ))
    return out


def pod_base_model(pod: TargetPod, wanted_models: set[str]) -> str:
    """The one base model a pod is scheduled under: the first served name some resource asks for."""
    for name in pod.served_models:
        if name in wanted_models:
            return name
    return pod.served_models[0] if pod.served_models else ""


def capacities(pods: Sequence[TargetPod], *, wanted_models: set[str],
               foreign: Mapping[str, int]) -> list[PodCapacity]:
    """Scheduler pods: LoRA limits from the command line, foreign adapters (per pod name) reserved."""
    return [
        PodCapacity(
            key=PodKey(p.name),
            base_model=pod_base_model(p, wanted_models),
            adapter_slots=p.slots,
            max_lora_rank=p.max_lora_rank,
            memory_capacity_bytes=p.memory_capacity,
            ready=p.usable,
            node=p.node,
            zone=p.zone,
            reserved_slots=min(foreign.get(p.name, 0), p.slots),
            active_slots=p.max_loras,
        )
        for p in pods
        if p.served_models and p.lora_enabled
    ]
