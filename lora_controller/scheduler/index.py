"""What the scheduler keeps between runs: its pods and adapters, indexed, and its last answer.

The `Index` holds the state of every pod (grouped by base model, see state.py) and adapter, which
adapters are short, and the input and answer of the last run, which the incremental path compares
a new input with (difference.py). A run (run.py) changes it in place; `build` makes a new one.

`build` is step 1 of a full run, keep: every replica of the current placement that is still valid
stays where it is (the pod exists, serves the base model, its max-lora-rank admits the adapter, the
adapter's eligible pods include it, one replica per pod, not more than wanted: then a subset on
Ready pods, spread over zones then nodes). If a pod then holds more than it can, it keeps its
highest-priority replicas, smallest first; the rest count as missing. Loading a LoRA into vLLM is
not free, so a valid placement is never moved to a "better" pod.
"""

from __future__ import annotations

from collections.abc import Mapping

from lora_controller.scheduler.model import AdapterDemand, AdapterKey, PodCapacity, PodKey
from lora_controller.scheduler.state import AdapterState, GroupState, PodState, attach, count


class Index:
    """The pods and adapters of the last run and its answer."""

    __slots__ = (
        "adapter_specs", "adapters", "base_model_pods", "fill", "groups", "nonempty", "placement",
        "pod_specs", "pods", "short",
    )

    def __init__(self) -> None:
        self.groups: dict[str, GroupState] = {}
        self.pods: dict[PodKey, PodState] = {}
        self.adapters: dict[AdapterKey, AdapterState] = {}
        # Adapters that want every eligible pod, and adapters with fewer replicas than wanted.
        self.fill: dict[AdapterKey, AdapterState] = {}
        self.short: set[AdapterKey] = set()
        # Pods per base model, Ready or not (for the reason "no pod serves base model ...").
        self.base_model_pods: dict[str, int] = {}
        # The last run's input and answer (`nonempty`: its adapters that have a pod).
        self.adapter_specs: Mapping[AdapterKey, AdapterDemand] = {}
        self.pod_specs: Mapping[PodKey, PodCapacity] = {}
        self.placement: dict[AdapterKey, tuple[PodKey, ...]] = {}
        self.nonempty: dict[AdapterKey, tuple[PodKey, ...]] = {}

    def add_pod(self, spec: PodCapacity, *, live: bool) -> PodState:
        """Add a pod (`live`: index it now; otherwise the group's `build_index` does, for all)."""
        group = self.groups.get(spec.base_model)
        if group is None:
            group = self.groups[spec.base_model] = GroupState(spec.base_model)
        pod = PodState(spec, group)
        group.add_pod(pod, live=live)
        self.pods[spec.key] = pod
        self.base_model_pods[spec.base_model] = self.base_model_pods.get(spec.base_model, 0) + 1
        return pod

    def add_adapter(self, demand: AdapterDemand) -> AdapterState:
        """Add an adapter, on no pod yet."""
        adapter = AdapterState(demand, self.groups.get(demand.base_model))
        self.adapters[demand.key] = adapter
        if adapter.fill:
            self.fill[demand.key] = adapter
        count(adapter, 1)
        return adapter


def build(
    adapter_specs: Mapping[AdapterKey, AdapterDemand],
    pod_specs: Mapping[PodKey, PodCapacity],
    observed: Mapping[AdapterKey, tuple[PodKey, ...]],
) -> Index:
    """A new index of this input, holding the valid replicas of `observed` (step 1, keep)."""
    index = Index()
    for pod_key in sorted(pod_specs):
        index.add_pod(pod_specs[pod_key], live=False)
    kept_on: dict[PodKey, list[AdapterState]] = {}
    for key in sorted(adapter_specs):
        adapter = index.add_adapter(adapter_specs[key])
        for pod in valid_current(index.pods, adapter, observed.get(key, ())):
            kept_on.setdefault(pod.key, []).append(adapter)
    for pod_key in sorted(kept_on):
        pod = index.pods[pod_key]
        for adapter in _fitting(pod, kept_on[pod_key]):
            attach(adapter, pod)
    for group in index.groups.values():
        group.build_index()
    index.short = {k for k, a in index.adapters.items() if a.short}
    return index


def _fitting(pod: PodState, kept: list[AdapterState]) -> list[AdapterState]:
    """The replicas of `kept` that `pod` keeps: all if they fit, else its highest priorities,
    smallest first, while they fit."""
    if sum(a.mem for a in kept) <= pod.free_mem and len(kept) <= pod.free_slots:
        return kept
    kept.sort(key=lambda a: (-a.prio, a.mem, a.key))
    free_mem, free_slots, fitting = pod.free_mem, pod.free_slots, []
    for adapter in kept:
        if adapter.mem <= free_mem and free_slots >= 1:
            fitting.append(adapter)
            free_mem -= adapter.mem
            free_slots -= 1
    return fitting


def valid_current(
    pods: Mapping[PodKey, PodState], adapter: AdapterState, keys: tuple[PodKey, ...]
) -> list[PodState]:
    """The pods of the current placement that may keep `adapter`, at most `wanted` of them (also
    what the incremental path keeps when the replica count drops, difference.py)."""
    valid: list[PodState] = []
    seen: set[PodKey] = set()
    for key in keys:
        pod = pods.get(key)
        if (
            pod is None or key in seen or pod.group is not adapter.group
            or pod.max_rank < adapter.rank or not adapter.may_use(pod)
        ):
            continue
        seen.add(key)
        valid.append(pod)
    if adapter.fill or len(valid) <= adapter.wanted:
        return valid
    # Fewer replicas wanted than held: keep Ready pods, spread over zones then nodes.
    chosen: list[PodState] = []
    zones: set[str] = set()
    nodes: set[str] = set()
    remaining = sorted(valid, key=lambda p: p.key)
    while len(chosen) < adapter.wanted:
        best = min(
            remaining,
            key=lambda p: (
                not p.ready, 0 if p.zone not in zones else 1 if p.node not in nodes else 2, p.key
            ),
        )
        remaining.remove(best)
        chosen.append(best)
        zones.add(best.zone)
        nodes.add(best.node)
    return chosen
