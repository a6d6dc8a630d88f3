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
    base_model = adapter.demand.base_model
    group = adapter.group
    if group is None or not pods_of_base_model:
        return f"no pod serves base model {base_model}"
    selector = adapter.eligible
    if selector is None:
        matching = len(group.pods)
        which = f"serving base model {base_model}"
        also = ""
    else:
        matching = sum(1 for k in selector if k in group.pods)
        if not matching:
            return "no pod matches this adapter's podSelector"
        which = f"serving base model {base_model} and matching its podSelector"
        also = ", matching its podSelector"
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
    hosted = adapter.pods
    on_eligible = sum(
        1 for p in hosted.values()
        if p.ready and p.max_rank >= adapter.rank and adapter.may_use(p)
    )
    if on_eligible >= len(eligible):
        return (
            f"one replica per pod, and all {len(eligible)} eligible pods (Ready, serving "
            f"{base_model}, max-lora-rank >= {adapter.rank}{also}) already have it"
        )
    caps = _capacities(group, adapter.rank) if selector is None else _capacities_of(eligible)
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
    largest_free: int | None = None
    with_slot = 0
    if selector is None:
        for klass in group.classes_for(adapter.rank):
            for entry in reversed(klass.entries):
                if entry[2] not in hosted:
                    if largest_free is None or entry[0] > largest_free:
                        largest_free = entry[0]
                    break
            with_slot += len(klass.entries)
        with_slot -= sum(1 for p in hosted.values() if _listed(p))
        lower = group.has_priority_below(adapter.prio)
    else:
        for p in eligible:
            if p.entry is not None and p.key not in hosted:
                with_slot += 1
                if largest_free is None or p.free_mem > largest_free:
                    largest_free = p.free_mem
        lower = any(q < adapter.prio for p in eligible for q in p.prio_count)
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
    if adapter.evicts:
        if lower:
            reason += f"; evicting adapters of priority below {adapter.prio} would not make room"
        else:
            reason += f"; no adapter of priority below {adapter.prio} to evict"
    elif lower:
        reason += "; preemptionPolicy None: lower-priority adapters are not evicted"
    return reason


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
