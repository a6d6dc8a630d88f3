"""One namespace's world, turned into scheduler input and back (pure).

Capacity and priorities are global across the LoraAdapters of a namespace (pods belong to one
namespace, and a resource selects pods in its own namespace), so the controller places a whole
namespace at once. This module builds the scheduler's input from the resources, their discoveries,
the pods and what the pods report, and decides which adapters on a pod are ours:

- an adapter is **ours** (managed) when its `root` lies under the adapter store, or under the
  local repository of one of the namespace's resources, or when a resource's status records it on
  that pod; the owner is the resource that declares that name (or recorded it);
- everything else on a pod is **foreign** (`--lora-modules`, loaded by hand): it takes a slot and
  is never moved, reloaded or unloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from lora_controller.api.types import LoraAdapter, PreemptionPolicy, SourceType
from lora_controller.core.quantity import parse_quantity
from lora_controller.reconcile.pods import TargetPod, selector_matches
from lora_controller.scheduler.model import (
    AdapterDemand,
    AdapterKey,
    PodCapacity,
    PodKey,
)
from lora_controller.scheduler.model import PreemptionPolicy as SchedPolicy
from lora_controller.sources.model import DiscoveredAdapter


@dataclass(frozen=True)
class Wanted:
    """One discovered adapter of one resource, as the controller will serve it."""

    cr: LoraAdapter
    adapter: DiscoveredAdapter
    path: str  # where vLLM reads it: local path, or its folder in the adapter store
    staged: bool  # the files are where `path` says (local adapters always are)

    @property
    def key(self) -> AdapterKey:
        return AdapterKey(self.cr.metadata.namespace, self.cr.metadata.name, self.adapter.name)

    @property
    def lazy(self) -> bool:
        return not self.cr.spec.deployment().load_on_startup


def _under(path: str | None, root: str) -> bool:
    if not path or not root:
        return False
    try:
        return PurePosixPath(path).is_relative_to(PurePosixPath(root))
    except ValueError:
        return False


@dataclass
class Ownership:
    """Answers "is this adapter on this pod ours, and whose?"."""

    store_root: str
    namespace: str
    local_roots: dict[str, str] = field(default_factory=dict)  # cr name -> local repository
    names: dict[str, str] = field(default_factory=dict)  # adapter name -> owning cr key
    recorded: dict[tuple[str, str], str] = field(default_factory=dict)  # (pod name, adapter) -> cr key

    def owner(self, pod_key: str, name: str, root: str | None) -> str | None:
        pod_name = pod_key.split("/", 1)[-1]
        if (pod_name, name) in self.recorded:
            return self.recorded[(pod_name, name)]
        if _under(root, self.store_root):
            parts = PurePosixPath(root or "").relative_to(PurePosixPath(self.store_root)).parts
            if len(parts) >= 2 and parts[0] == self.namespace:
                return f"{self.namespace}/{parts[1]}"
            return self.names.get(name, "")
        for cr, local in self.local_roots.items():
            if _under(root, local):
                return f"{self.namespace}/{cr}"
        return None


def ownership(crs: Sequence[LoraAdapter], *, store_root: str, namespace: str,
              wanted: Sequence[Wanted]) -> Ownership:
    own = Ownership(store_root=store_root, namespace=namespace)
    for cr in crs:
        src = cr.spec.adapter_source
        if src.type is SourceType.LOCAL:
            own.local_roots[cr.metadata.name] = src.repository
        for assignment in (cr.status.pod_assignments if cr.status else []):
            for name in assignment.adapters:
                own.recorded.setdefault((assignment.pod, name), cr.key)
    for w in wanted:
        own.names.setdefault(w.adapter.name, w.cr.key)
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


def demands(wanted: Sequence[Wanted], pods: Sequence[TargetPod]) -> list[AdapterDemand]:
    """Scheduler demands: each adapter with its resource's priority, policy, replicas and pods."""
    out: list[AdapterDemand] = []
    eligible_cache: dict[str, frozenset[PodKey]] = {}
    for w in wanted:
        cr = w.cr
        sched = cr.spec.scheduling()
        dep = cr.spec.deployment()
        if cr.key not in eligible_cache:
            eligible_cache[cr.key] = frozenset(
                PodKey(p.key) for p in pods
                if p.serves(cr.spec.base_model) and selector_matches(dep.pod_selector, p.labels)
            )
        out.append(AdapterDemand(
            key=w.key,
            base_model=cr.spec.base_model,
            memory_bytes=adapter_memory(cr, w.adapter),
            rank=w.adapter.rank,
            priority=sched.priority,
            preemption_policy=(SchedPolicy.NEVER if sched.preemption_policy is PreemptionPolicy.NONE
                               else SchedPolicy.LOWER_PRIORITY),
            replicas=dep.replicas,
            eligible_pods=eligible_cache[cr.key],
        ))
    return out


def pod_base_model(pod: TargetPod, wanted_models: set[str]) -> str:
    """The one base model a pod is scheduled under: the first served name some resource asks for."""
    for name in pod.served_models:
        if name in wanted_models:
            return name
    return pod.served_models[0] if pod.served_models else ""


def capacities(
    pods: Sequence[TargetPod],
    *,
    wanted_models: set[str],
    foreign: Mapping[str, int],
) -> list[PodCapacity]:
    """Scheduler pods: LoRA limits from the command line, foreign adapters reserved."""
    return [
        PodCapacity(
            key=PodKey(p.key),
            base_model=pod_base_model(p, wanted_models),
            adapter_slots=p.slots,
            max_lora_rank=p.max_lora_rank,
            memory_capacity_bytes=p.memory_capacity,
            ready=p.usable,
            node=p.node,
            zone=p.zone,
            reserved_slots=min(foreign.get(p.key, 0), p.slots),
        )
        for p in pods
        if p.served_models and p.lora_enabled
    ]
