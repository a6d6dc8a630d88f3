"""Finalizers and the adapter store's garbage collection: nothing left behind, nothing lost.

Every live resource carries the controller's finalizer, so deleting it waits until its adapters
are unloaded: the finalizer is removed only when no pod lists an adapter of the resource and every
usable pod of the namespace has been read (a pod not read yet, or whose last read failed, may still
hold one). The store keeps every version that is wanted or still listed by a pod (vLLM may read an
adapter's files again on a cache miss) and drops the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from lora_controller.api.types import FINALIZER, LoraAdapter, SourceType
from lora_controller.reconcile.discovering import DiscoveryCache
from lora_controller.reconcile.refs import CrRef, PodRef
from lora_controller.reconcile.snapshot import NamespaceSnapshot
from lora_controller.reconcile.world import Ownership, Wanted
from lora_controller.reconcile.writer import Writer
from lora_controller.scheduler.model import AdapterKey

log = structlog.get_logger(__name__)


async def ensure_finalizers(writer: Writer, live: Sequence[LoraAdapter]) -> None:
    for cr in live:
        if FINALIZER not in cr.metadata.finalizers:
            await writer.add_finalizer(cr)


def still_loaded(cr: LoraAdapter, snapshot: NamespaceSnapshot,
                 own: Ownership) -> list[tuple[PodRef, str]]:
    """(pod, adapter) of the resource's adapters that pods still list."""
    ref = CrRef.of(cr)
    return [(pod, name) for pod, adapters in snapshot.readable.items()
            for name, root in adapters.items() if own.owner(pod, name, root) == ref]


async def finish_deletions(writer: Writer, snapshot: NamespaceSnapshot, own: Ownership,
                           discovery: DiscoveryCache) -> None:
    """Drop the finalizer of each deleted resource once none of its adapters is on a pod."""
    unread = snapshot.unobserved_usable()
    for cr in snapshot.deleting:
        if FINALIZER not in cr.metadata.finalizers:
            continue
        left = still_loaded(cr, snapshot, own)
        if left or unread:
            log.debug("deletion waits", cr=str(CrRef.of(cr)), loaded=len(left),
                      unread_pods=[p.name for p in unread][:5])
            continue
        if await writer.remove_finalizer(cr):
            discovery.forget(CrRef.of(cr))
            log.info("finalizer removed", cr=str(CrRef.of(cr)))


def store_keep(wanted: Mapping[AdapterKey, Wanted], snapshot: NamespaceSnapshot) -> set[Path]:
    """Store folders to keep: wanted versions, and every path a pod still lists."""
    keep = {Path(w.path) for w in wanted.values()
            if not w.staged or w.adapter.source_type is not SourceType.LOCAL}
    for adapters in snapshot.readable.values():
        keep.update(Path(root) for root in adapters.values() if root)
    return keep


async def collect_store(writer: Writer, namespace: str, wanted: Mapping[AdapterKey, Wanted],
                        snapshot: NamespaceSnapshot) -> None:
    """Drop store folders nothing wants; not while a usable pod is unread (it may use one)."""
    if writer.acts and not snapshot.unobserved_usable():
        await writer.gc_store(namespace, store_keep(wanted, snapshot))
