"""Why an adapter is where it is, in words with figures (`GET /v1/adapters/{name}/why`).

The answer joins what the scheduler decided (its reason for each replica without a pod, the
eviction that took one away) with what the adapter needs (memory, rank, replicas, priority, its
resource's podSelector) and the pods of its namespace: those it may use, with their free slots
and memory, and for every other pod the one limit that rules it out. `kubectl lora why` prints
it; nothing here computes a placement (the scheduler's words are quoted, not re-derived).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lora_controller.api.types import LabelSelector
from lora_controller.core.quantity import format_bytes
from lora_controller.reconcile.view import Placing, PodDetail

JSON = dict[str, Any]


def selector_text(selector: LabelSelector | None) -> str | None:
    """A podSelector as `kubectl get -l` writes one; None for no selector (every pod)."""
    if selector is None:
        return None
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for r in selector.match_expressions or []:
        if r.operator in ("In", "NotIn"):
            parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values or [])})")
        else:
            parts.append(r.key if r.operator == "Exists" else f"!{r.key}")
    return ",".join(parts) or None


def _free_memory(d: PodDetail) -> int | None:
    return None if d.memory_capacity is None else max(d.memory_capacity - d.memory_used, 0)


def _excluded(p: Placing, d: PodDetail) -> str | None:
    """The limit that rules pod `d` out for the adapter, or None when it may take it."""
    a = p.adapter
    if a.base_model not in d.base_models:
        served = ", ".join(d.base_models) or "no model"
        return f"serves {served}, not {a.base_model}"
    if d.pod.name not in p.eligible:
        return f"its labels do not match the podSelector ({selector_text(p.pod_selector)})"
    if d.unusable:
        return f"takes no adapter: {d.unusable}"
    if p.rank is not None and d.max_lora_rank < p.rank:
        return f"--max-lora-rank {d.max_lora_rank} is below the adapter's rank {p.rank}"
    return None


def _pod(d: PodDetail, p: Placing) -> JSON:
    a = p.adapter
    free = _free_memory(d)
    return {"name": d.pod.name, "ready": d.pod.ready, "slots": d.slots,
            "freeSlots": max(d.slots - d.slots_used, 0), "memoryCapacity": d.memory_capacity,
            "freeMemory": free, "freeMemoryText": format_bytes(free) if free is not None else None,
            "maxLoraRank": d.max_lora_rank, "placed": d.pod.name in a.placed,
            "confirmed": any(c.name == d.pod.name for c in a.confirmed)}


def verdict(p: Placing) -> str:
    """One sentence: where the adapter stands and the first reason it is short, if it is."""
    a = p.adapter
    confirmed = sorted(c.name for c in a.confirmed)
    wanted = "every eligible pod" if p.replicas is None else f"{p.replicas} replica(s)"
    if p.preempted:
        return f"{a.name} was {p.preempted}; wanted: {wanted}"
    if p.shortfall:
        where = f"on {', '.join(a.placed)}" if a.placed else "on no pod"
        return (f"{a.name} is {where} (wanted: {wanted}); the scheduler says: "
                f"{'; '.join(sorted(set(p.shortfall)))}")
    failed = {pod: why for pod, why in a.failed_pods}
    if failed:
        pod, why = sorted(failed.items())[0]
        return f"{a.name} is placed on {', '.join(a.placed)} but failed on pod {pod}: {why}"
    if not a.placed:
        return f"{a.name} has no pod yet (no schedule has placed it)"
    if set(a.placed) <= set(confirmed):
        state = "confirmed" if confirmed else "placed lazily (loaded on first request)"
        return f"{a.name} is {state} on {', '.join(a.placed)} ({wanted})"
    if a.lazy:
        return (f"{a.name} is placed lazily on {', '.join(a.placed)}: loaded when a router asks "
                f"(ensure=true); confirmed on {', '.join(confirmed) or 'no pod yet'}")
    return (f"{a.name} is placed on {', '.join(a.placed)} and loading; confirmed on "
            f"{', '.join(confirmed) or 'no pod yet'}")


def why(p: Placing, pods: Sequence[PodDetail]) -> JSON:
    a = p.adapter
    eligible, others = [], []
    for d in sorted(pods, key=lambda d: d.pod.name):
        excluded = _excluded(p, d)
        if excluded is None:
            eligible.append(_pod(d, p))
        else:
            others.append({"name": d.pod.name, "why": excluded})
    return {
        "adapter": a.name, "namespace": a.namespace, "loraAdapter": a.lora_adapter,
        "baseModel": a.base_model, "version": a.version, "lazy": a.lazy,
        "placed": list(a.placed), "confirmed": sorted(c.name for c in a.confirmed),
        "failedPods": [{"pod": pod, "reason": r} for pod, r in a.failed_pods],
        "failures": list(a.failures),
        "needs": {"memory": p.memory, "memoryText": format_bytes(p.memory), "rank": p.rank,
                  "replicas": p.replicas, "priority": p.priority,
                  "preemptionPolicy": p.preemption_policy,
                  "podSelector": selector_text(p.pod_selector)},
        "shortfall": list(p.shortfall), "preempted": p.preempted, "verdict": verdict(p),
        "eligiblePods": eligible, "otherPods": others,
    }
