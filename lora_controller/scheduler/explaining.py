"""Why a replica has no pod, in words a person can act on.

A reason names the limit that stopped the adapter (base model, podSelector, readiness,
max-lora-rank, one replica per pod, memory capacity, slots, free memory, preemption policy) with the
numbers in Kubernetes quantity units, so the fix is obvious: add pods, widen the podSelector, raise
`--max-lora-rank` or `--max-cpu-loras`, lower the replica count, raise the priority. Capacity
reasons count only the pods the adapter's podSelector matches. Reasons are computed against the final placement, so running
the scheduler again on its own output gives the same words.
"""

from __future__ import annotations

from lora_controller.core.quantity import format_bytes
from lora_controller.scheduler.model import PodKey
from lora_controller.scheduler.state import UNBOUNDED, AdapterState, GroupState, PodState


def _memory(amount: int) -> str:
    return "unbounded" if amount >= UNBOUNDED // 2 else format_bytes(amount)


def _capacities(group: GroupState, rank: int) -> list[tuple[int, PodKey]]:
    caps = group.capacities.get(rank)
    if caps is None:
        caps = _capacities_of(group.ready_pods(rank))
        group.capacities[rank] = caps
    return caps


def _capacities_of(pods: list[PodState]) -> list[tuple[int, PodKey]]:
    return sorted(
        (
            (UNBOUNDED if p.capacity_total is None else p.capacity_total, p.key)
            for p in pods
            if p.slots_total > 0
        ),
        reverse=True,
    )


def explain(adapter: AdapterState, pods_of_base_model: int) -> str:
    """The reason the next replica of `adapter` cannot be placed on the current state."""
    group = adapter.group
    if group is None or not pods_of_base_model:
        return f"no pod serves base model {adapter.demand.base_model}"
    eligible = _eligible(adapter, group)
    if isinstance(eligible, str):
        return eligible
    on_eligible = sum(
        1 for p in adapter.pods.values()
        if p.ready and p.max_rank >= adapter.rank and adapter.may_use(p)
    )
    if on_eligible >= len(eligible):
        also = "" if adapter.eligible is None else ", matching its podSelector"
        return (
            f"one replica per pod, and all {len(eligible)} eligible pods (Ready, serving "
            f"{adapter.demand.base_model}, max-lora-rank >= {adapter.rank}{also}) already have it"
        )
    too_small = _capacity_reason(adapter, group, eligible)
    if too_small is not None:
        return too_small
    largest_free, with_slot, lower = _free_room(adapter, group, eligible)
    candidates = len(eligible) - on_eligible
    if largest_free is None:
        reason = (
            f"every adapter slot is in use on the {candidates} eligible pods that do not have it "
            f"(--max-cpu-loras)"
        )
    else:
        reason = (
            f"needs {format_bytes(adapter.mem)}, the largest free memory on an eligible pod with "
            f"a free adapter slot is {_memory(largest_free)}"
        )
        if candidates > with_slot:
            reason += f" ({candidates - with_slot} more eligible pods have no free slot)"
    return reason + _preemption_note(adapter, lower)


def _eligible(adapter: AdapterState, group: GroupState) -> list[PodState] | str:
    """The pods a replica of `adapter` may use (Ready, matching, rank admitted), or why none."""
    base_model = adapter.demand.base_model
    selector = adapter.eligible
    if selector is None:
        matching = len(group.pods)
        which = f"serving base model {base_model}"
    else:
        matching = sum(1 for k in selector if k in group.pods)
        if not matching:
            return "no pod matches this adapter's podSelector"
        which = f"serving base model {base_model} and matching its podSelector"
    ready = group.usable_pods(0, selector)
    if not ready:
        return f"none of the {matching} pods {which} is Ready"
    eligible = group.usable_pods(adapter.rank, selector)
    if not eligible:
        largest = max(p.max_rank for p in ready)
        return (
            f"rank {adapter.rank} exceeds the max-lora-rank of every Ready pod serving "
            f"{base_model}{' that matches its podSelector' if selector is not None else ''} "
            f"(largest {largest})"
        )
    return eligible


def _capacity_reason(
    adapter: AdapterState, group: GroupState, eligible: list[PodState]
) -> str | None:
    """Why no eligible pod could take a replica even empty, or None if one could."""
    hosted = adapter.pods
    if adapter.eligible is None:
        caps = _capacities(group, adapter.rank)
    else:
        caps = _capacities_of(eligible)
    largest_cap = next((cap for cap, key in caps if key not in hosted), None)
    if largest_cap is None:
        return (
            "no eligible pod has an adapter slot (--max-cpu-loras, less adapters loaded "
            "outside the controller)"
        )
    if adapter.mem > largest_cap:
        return (
            f"needs {format_bytes(adapter.mem)}, more than the adapter memory capacity of any "
            f"eligible pod (largest {_memory(largest_cap)})"
        )
    return None


def _free_room(
    adapter: AdapterState, group: GroupState, eligible: list[PodState]
) -> tuple[int | None, int, bool]:
    """The largest free memory on an eligible pod with a free slot and without the adapter (None:
    no such pod), how many such pods there are, and whether a lower priority is placed there."""
    hosted = adapter.pods
    largest_free: int | None = None
    with_slot = 0
    if adapter.eligible is None:
        for klass in group.classes_for(adapter.rank):
            for entry in reversed(klass.entries):
                if entry[2] not in hosted:
                    if largest_free is None or entry[0] > largest_free:
                        largest_free = entry[0]
                    break
            with_slot += len(klass.entries)
        with_slot -= sum(1 for p in hosted.values() if _listed(p))
        return largest_free, with_slot, group.has_priority_below(adapter.prio)
    for p in eligible:
        if p.entry is not None and p.key not in hosted:
            with_slot += 1
            if largest_free is None or p.free_mem > largest_free:
                largest_free = p.free_mem
    return largest_free, with_slot, any(q < adapter.prio for p in eligible for q in p.prio_count)


def _preemption_note(adapter: AdapterState, lower: bool) -> str:
    """What preemption could not do, or would not (`lower`: lower priorities are placed)."""
    if adapter.evicts:
        if lower:
            return f"; evicting adapters of priority below {adapter.prio} would not make room"
        return f"; no adapter of priority below {adapter.prio} to evict"
    if lower:
        return "; preemptionPolicy None: lower-priority adapters are not evicted"
    return ""


def _listed(pod: PodState) -> bool:
    return pod.entry is not None


def reasons_for(adapter: AdapterState, missing: int, generic: str) -> tuple[str, ...]:
    """One reason per missing replica: replicas lost to preemption first, then the generic one."""
    reasons: list[str] = []
    preempted = [e for e in adapter.preempted if e[0] not in adapter.pods]
    for pod, by, by_priority in preempted[:missing]:
        reasons.append(f"preempted on pod {pod} by {by} (priority {by_priority}); {generic}")
    reasons.extend([generic] * (missing - len(reasons)))
    return tuple(reasons)
