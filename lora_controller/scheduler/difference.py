"""The incremental path: bring the last run's index up to this input when the change is small.

A `Scheduler` keeps its index between runs. When the new input differs from the last one only by
removed or added pods and adapters (and eligible sets changed only by those pods), and `current` is
the last answer less the replicas on removed pods or of removed adapters, the index is updated
instead of rebuilt: removed replicas are detached, added pods indexed, added adapters queued.

Why the answer is the same as a full run on the same input (a property test checks it): a full run
would keep every replica the index still holds (step 1), and by the stability argument of run.py
every replica that failed last time failed against the final state of the last run. Since then,
only the changes applied here gave any pod room, and each is logged as an event of the new run
(`Run.event`), so a failed search is redone exactly when a pod it could use gained room since;
nothing else could make it succeed. Any other change (a pod's capacity, an adapter's size or
priority, a set changed otherwise, a placement that is not the last answer) rebuilds the index.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Set
from typing import NamedTuple

from lora_controller.scheduler.index import Index, valid_current
from lora_controller.scheduler.model import AdapterDemand, AdapterKey, PodCapacity, PodKey
from lora_controller.scheduler.run import ADDED, Run
from lora_controller.scheduler.state import AdapterState, count, detach, reindex, reopen


class Difference(NamedTuple):
    """What changed since the last run, when that is small enough to apply."""

    removed_pods: list[PodKey]
    added_pods: list[PodCapacity]
    removed_adapters: Set[AdapterKey]
    added_adapters: list[AdapterDemand]
    replaced: list[AdapterDemand]
    """Demands equal to the last ones but for eligible pods that were added or removed."""


def difference(
    index: Index,
    adapter_specs: Mapping[AdapterKey, AdapterDemand],
    pod_specs: Mapping[PodKey, PodCapacity],
    observed: Mapping[AdapterKey, tuple[PodKey, ...]],
) -> Difference | None:
    """The difference from the last run to this input, or None if the index must be rebuilt."""
    pods = _pod_difference(index, pod_specs)
    if pods is None:
        return None
    removed_pods, added_pods = pods
    old_adapters = index.adapter_specs
    removed_adapters = old_adapters.keys() - adapter_specs.keys()
    added = adapter_specs.keys() - old_adapters.keys()
    replaced = _replaced_demands(index, adapter_specs, pod_specs)
    if replaced is None or not _as_last_answered(index, observed, removed_pods, removed_adapters):
        return None
    return Difference(
        removed_pods=removed_pods,
        added_pods=sorted(added_pods, key=lambda s: s.key),
        removed_adapters=removed_adapters,
        added_adapters=[adapter_specs[k] for k in sorted(added)],
        replaced=replaced,
    )


def _pod_difference(
    index: Index, pod_specs: Mapping[PodKey, PodCapacity]
) -> tuple[list[PodKey], list[PodCapacity]] | None:
    """Removed and added pods, or None if a pod changed or an added pod has a new base model."""
    old_pods = index.pod_specs
    removed = [k for k in old_pods if k not in pod_specs]
    added: list[PodCapacity] = []
    for pod_key, spec in pod_specs.items():
        old = old_pods.get(pod_key)
        if old is None:
            if spec.base_model not in index.groups:
                return None
            added.append(spec)
        elif old is not spec and old != spec:
            return None
    return removed, added


def _replaced_demands(
    index: Index,
    adapter_specs: Mapping[AdapterKey, AdapterDemand],
    pod_specs: Mapping[PodKey, PodCapacity],
) -> list[AdapterDemand] | None:
    """Demands that changed only by eligible pods added or removed, replica counts or demand
    rates; None if one changed more."""
    old_adapters = index.adapter_specs
    replaced: list[AdapterDemand] = []
    if len(adapter_specs) == len(old_adapters) and all(
        map(operator.is_, adapter_specs.values(), old_adapters.values())
    ):
        return replaced  # the same demand objects in the same order need no look
    same_sets: dict[tuple[int, int], bool] = {}
    for key, demand in adapter_specs.items():
        old_demand = old_adapters.get(key)
        if old_demand is None or old_demand is demand:
            continue
        if not _same_demand(old_demand, demand, index.pod_specs, pod_specs, same_sets):
            return None
        replaced.append(demand)
    return replaced


def _same_demand(
    old: AdapterDemand,
    new: AdapterDemand,
    old_pods: Mapping[PodKey, PodCapacity],
    new_pods: Mapping[PodKey, PodCapacity],
    same_sets: dict[tuple[int, int], bool],
) -> bool:
    """Is `new` the same demand as `old`, but for eligible pods that were added or removed, a
    replica count (not to or from "every pod") or a demand rate?

    The reconciler recomputes each CR's eligible set when pods come and go; such a change is part
    of the pod difference the incremental path applies, not a change of the adapter. A new replica
    count or rate (demand, scaling.py) is applied in place too. `same_sets` caches the answer per
    pair of set objects (the reconciler passes one set per CR).
    """
    if (old.key, old.base_model, old.memory_bytes, old.rank, old.priority, old.preemption_policy,
            old.replicas is None) != (new.key, new.base_model, new.memory_bytes, new.rank,
                                      new.priority, new.preemption_policy, new.replicas is None):
        return False
    old_set, new_set = old.eligible_pods, new.eligible_pods
    if old_set is new_set:
        return True
    if old_set is None or new_set is None:
        return False
    pair = (id(old_set), id(new_set))
    same = same_sets.get(pair)
    if same is None:
        same = same_sets[pair] = all(
            k not in old_pods or k not in new_pods for k in old_set.symmetric_difference(new_set)
        )
    return same


def _as_last_answered(
    index: Index,
    observed: Mapping[AdapterKey, tuple[PodKey, ...]],
    removed_pods: list[PodKey],
    removed_adapters: Set[AdapterKey],
) -> bool:
    """Is the observed placement the last answer less what is gone?"""
    expected: Mapping[AdapterKey, tuple[PodKey, ...]] = index.nonempty
    gone = set(removed_pods)
    touched = {a for k in removed_pods for a in index.pods[k].hosted}
    if touched or removed_adapters:
        left = _without(expected, touched, gone)
        for key in removed_adapters:
            left.pop(key, None)
        expected = left
    if touched:
        # The pods may still report a lost pod's replicas: a full run would ignore them too.
        observed = _without(observed, touched, gone)
    return observed == expected


def _without(
    placement: Mapping[AdapterKey, tuple[PodKey, ...]], keys: Set[AdapterKey], gone: Set[PodKey]
) -> dict[AdapterKey, tuple[PodKey, ...]]:
    """A copy of `placement` where the adapters `keys` are no longer on the pods `gone`."""
    out = dict(placement)
    for key in keys:
        held = tuple(p for p in out.get(key, ()) if p not in gone)
        if held:
            out[key] = held
        else:
            out.pop(key, None)
    return out


def apply_difference(run: Run, diff: Difference) -> None:
    """Bring the run's index up to this input, logging every pod that gained room."""
    _replace_demands(run, diff.replaced)
    _remove_adapters(run, diff.removed_adapters)
    _remove_pods(run, diff.removed_pods)
    index = run.index
    for spec in diff.added_pods:
        run.event(index.add_pod(spec, live=True), ADDED)
    for demand in diff.added_adapters:
        adapter = index.add_adapter(demand)
        run.changed.add(demand.key)
        if adapter.short:
            index.short.add(demand.key)


def _replace_demands(run: Run, replaced: list[AdapterDemand]) -> None:
    index = run.index
    selectors_changed = False
    for demand in replaced:
        adapter = index.adapters[demand.key]
        adapter.demand = demand
        if adapter.eligible is not demand.eligible_pods:
            adapter.eligible = demand.eligible_pods
            selectors_changed = True
        count(adapter, -1)
        if demand.replicas is not None and demand.replicas != adapter.wanted:
            _rewant(run, adapter, demand.replicas)
        _reheat(adapter, demand.demand_rps / max(adapter.wanted, 1))
        count(adapter, 1)
    if selectors_changed:
        for group in index.groups.values():
            group.forget_selectors()


def _reheat(adapter: AdapterState, q: float) -> None:
    """A new demand per replica; the pods holding the adapter follow (heat.py)."""
    qi = round(q * 1_000_000)
    adapter.q = q
    if qi != adapter.qi:
        for pod in adapter.pods.values():
            pod.heat += qi - adapter.qi
            reopen(pod)
        adapter.qi = qi


def _rewant(run: Run, adapter: AdapterState, wanted: int) -> None:
    """A new replica count: keep the replicas a full run would keep (index.py), log the pods the
    others leave, and search afresh (a certificate of the old count says nothing of the new)."""
    index = run.index
    adapter.wanted = wanted
    adapter.cert_at = None
    adapter.repair_at = None
    if len(adapter.pods) > wanted:
        keep = {p.key for p in valid_current(index.pods, adapter, tuple(sorted(adapter.pods)))}
        for pod in [p for k, p in sorted(adapter.pods.items()) if k not in keep]:
            detach(adapter, pod)
            reindex(pod)
            run.event(pod, adapter.prio)
    run.changed.add(adapter.key)
    if adapter.short:
        index.short.add(adapter.key)
    else:
        index.short.discard(adapter.key)


def _remove_adapters(run: Run, removed: Set[AdapterKey]) -> None:
    index = run.index
    for key in sorted(removed):
        adapter = index.adapters.pop(key)
        count(adapter, -1)
        index.fill.pop(key, None)
        index.short.discard(key)
        run.removed.add(key)
        for pod in list(adapter.pods.values()):
            detach(adapter, pod)
            reindex(pod)
            run.event(pod, adapter.prio)


def _remove_pods(run: Run, removed: list[PodKey]) -> None:
    index = run.index
    for pod_key in removed:
        pod = index.pods.pop(pod_key)
        for adapter in list(pod.hosted.values()):
            detach(adapter, pod)
            run.changed.add(adapter.key)
            if adapter.short:
                index.short.add(adapter.key)
        pod.group.remove_pod(pod)
        index.base_model_pods[pod.base_model] -= 1
