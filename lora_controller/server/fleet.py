"""The fleet as JSON, for the placement view and `kubectl lora` (pure: view values in, dicts out).

`fleet` is the page's summary: every LoraAdapter with its phase, counts, failed adapters and
conditions, every pod with its capacity and use, the namespaces and base models to filter by, and
the recent Events and load/unload outcomes. `adapter_row` is one adapter with the pods it is
placed on, confirmed on and failed on: the rows of the adapters x pods matrix and of
`kubectl lora status`. Every string is data to be escaped by whoever displays it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lora_controller.api.types import LoraAdapter
from lora_controller.reconcile.history import ActionRecord, EventRecord
from lora_controller.reconcile.view import AdapterInfo, PodDetail
from lora_controller.scheduler.model import AdapterKey

JSON = dict[str, Any]


def stamp(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if at is not None else None


def lora_adapter_json(cr: LoraAdapter) -> JSON:
    st = cr.status
    deploy, sched = cr.spec.deployment(), cr.spec.scheduling()
    return {
        "namespace": cr.metadata.namespace, "name": cr.metadata.name,
        "baseModel": cr.spec.base_model, "generation": cr.metadata.generation,
        "deleting": cr.metadata.deletion_timestamp is not None,
        "replicas": deploy.replicas, "lazy": not deploy.load_on_startup,
        "priority": sched.priority,
        "phase": st.phase.value if st and st.phase else None,
        "observedGeneration": st.observed_generation if st else None,
        "loadedCount": st.loaded_count if st else 0,
        "desiredCount": st.desired_count if st else 0,
        "failedCount": st.failed_count if st else 0,
        "failedAdapters": [{"name": f.name, "reason": f.reason} for f in st.failed_adapters]
        if st else [],
        "conditions": [{"type": c.type, "status": c.status, "reason": c.reason,
                        "message": c.message, "lastTransitionTime": c.last_transition_time}
                       for c in st.conditions] if st else [],
        "truncated": bool(st and st.truncated),
    }


def pod_detail_json(d: PodDetail) -> JSON:
    return {
        "namespace": d.pod.namespace, "name": d.pod.name, "ready": d.pod.ready,
        "observed": d.observed, "observedAt": stamp(d.pod.observed_at), "error": d.error,
        "baseModels": list(d.base_models), "slots": d.slots, "slotsUsed": d.slots_used,
        "activeSlots": d.active_slots, "maxLoraRank": d.max_lora_rank,
        "memoryCapacity": d.memory_capacity, "memoryUsed": d.memory_used,
        "unusable": d.unusable, "listed": len(d.adapters),
    }


def adapter_row(a: AdapterInfo) -> JSON:
    return {
        "name": a.name, "namespace": a.namespace, "loraAdapter": a.lora_adapter,
        "baseModel": a.base_model, "version": a.version, "lazy": a.lazy,
        "placed": list(a.placed), "confirmed": [p.name for p in a.confirmed],
        "failedPods": [{"pod": p, "reason": why} for p, why in a.failed_pods],
        "failures": list(a.failures),
    }


def event_json(e: EventRecord) -> JSON:
    return {"at": stamp(e.at), "namespace": e.namespace, "resource": e.resource, "type": e.type,
            "reason": e.reason, "note": e.note}


def action_json(a: ActionRecord) -> JSON:
    return {"at": stamp(a.at), "namespace": a.namespace, "pod": a.pod, "adapter": a.adapter,
            "verb": a.verb, "ok": a.ok, "reason": a.reason, "message": a.message}


def fleet(crs: Sequence[LoraAdapter], pods: Sequence[PodDetail], events: Sequence[EventRecord],
          actions: Sequence[ActionRecord], *, synced: bool, leader: bool) -> JSON:
    crs = sorted(crs, key=lambda c: (c.metadata.namespace, c.metadata.name))
    pods = sorted(pods, key=lambda d: (d.pod.namespace, d.pod.name))
    return {
        "synced": synced, "leader": leader,
        "namespaces": sorted({c.metadata.namespace for c in crs} | {d.pod.namespace for d in pods}),
        "baseModels": sorted({c.spec.base_model for c in crs}
                             | {m for d in pods for m in d.base_models}),
        "loraAdapters": [lora_adapter_json(c) for c in crs],
        "pods": [pod_detail_json(d) for d in pods],
        "events": [event_json(e) for e in events],
        "actions": [action_json(a) for a in actions],
    }


def matching(keys: Sequence[AdapterKey], *, lora_adapter: str | None,
             search: str | None) -> list[AdapterKey]:
    """The adapters the filters keep; `search` is a case-insensitive part of the adapter's name."""
    needle = search.lower() if search else None
    return [k for k in keys if (lora_adapter is None or k.cr == lora_adapter)
            and (needle is None or needle in k.name.lower())]
