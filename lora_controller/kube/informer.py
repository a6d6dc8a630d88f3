"""Shared informers: one reflector and one cache per resource kind and selector, many handlers.

As client-go's SharedIndexInformer: handlers get add/update/delete notifications, late handlers get
the current content as adds, a periodic resync re-delivers every object as an update (so a level-
based controller re-examines everything now and then), and `wait_for_cache_sync` tells when the first
list is in. Handlers are plain functions that only map events to work-queue keys; they must not block.
A handler that raises is logged and does not stop the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube.client import KubeClient
from lora_controller.kube.reflector import Reflector
from lora_controller.kube.resources import ResourceKind
from lora_controller.kube.store import IndexFunc, Store

JSON = dict[str, Any]
log = structlog.get_logger(__name__)


@dataclass
class EventHandler:
    on_add: Callable[[JSON], None] | None = None
    on_update: Callable[[JSON, JSON], None] | None = None
    on_delete: Callable[[JSON], None] | None = None


def strip_managed_fields(obj: JSON) -> JSON:
    """The default transform: managedFields are large and never read by the controller."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


class SharedInformer:
    """A cache of one kind (optionally one namespace and selectors) kept by a reflector."""

    def __init__(
        self,
        client: KubeClient,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        transform: Callable[[JSON], JSON] | None = strip_managed_fields,
        clock: Clock | None = None,
        watch_timeout: int | None = None,
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store = Store(indexers)
        self.resync_period = resync_period
        self.clock = clock or RealClock()
        self._handlers: list[EventHandler] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.reflector = Reflector(
            client, kind, self.store, self, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector, transform=transform, clock=self.clock,
            watch_timeout=watch_timeout,
        )

    # -- handlers -----------------------------------------------------------------------------
    def add_event_handler(
        self,
        *,
        on_add: Callable[[JSON], None] | None = None,
        on_update: Callable[[JSON, JSON], None] | None = None,
        on_delete: Callable[[JSON], None] | None = None,
    ) -> EventHandler:
        handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self.has_synced() and on_add is not None:
            for obj in self.store.list():
                self._call(on_add, obj)
        return handler

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self.store.add_indexer(name, fn)

    def _call(self, fn: Callable[..., None], *args: JSON) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("informer event handler failed", resource=str(self.kind))

    # -- ReflectorSink --------------------------------------------------------------------------
    def on_replace(self, added: list[JSON], updated: list[tuple[JSON, JSON]], deleted: list[JSON]) -> None:
        for obj in added:
            self.on_add(obj)
        for old, new in updated:
            if old is not new and old.get("metadata", {}).get("resourceVersion") != new.get(
                "metadata", {}).get("resourceVersion"):
                self.on_update(old, new)
        for obj in deleted:
            self.on_delete(obj)

    def on_add(self, obj: JSON) -> None:
        for h in self._handlers:
            if h.on_add:
                self._call(h.on_add, obj)

    def on_update(self, old: JSON, new: JSON) -> None:
        for h in self._handlers:
            if h.on_update:
                self._call(h.on_update, old, new)

    def on_delete(self, obj: JSON) -> None:
        for h in self._handlers:
            if h.on_delete:
                self._call(h.on_delete, obj)

    # -- lifecycle ----------------------------------------------------------------------------
    def has_synced(self) -> bool:
        return self.reflector.synced.is_set()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.reflector.synced.wait()
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self.reflector.run(), name=f"reflector:{self.kind}"))
        if self.resync_period:
            self._tasks.append(asyncio.create_task(self._resync_loop(), name=f"resync:{self.kind}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _resync_loop(self) -> None:
        assert self.resync_period
        while True:
            await self.clock.sleep(self.resync_period)
            if self.has_synced():
                self.resync()

    def resync(self) -> None:
        """Deliver every cached object as an update to itself."""
        for _, obj in self.store.items():
            self.on_update(obj, obj)


class InformerFactory:
    """Hands out one shared informer per (kind, namespace, label selector, field selector)."""

    def __init__(self, client: KubeClient, *, resync_period: float | None = None,
                 clock: Clock | None = None) -> None:
        self.client = client
        self.resync_period = resync_period
        self.clock = clock or RealClock()
        self._informers: dict[tuple[str, str | None, str | None, str | None], SharedInformer] = {}

    def informer(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Callable[[JSON], JSON] | None = strip_managed_fields,
    ) -> SharedInformer:
        key = (str(kind), namespace, label_selector, field_selector)
        if key not in self._informers:
            self._informers[key] = SharedInformer(
                self.client, kind, namespace=namespace, label_selector=label_selector,
                field_selector=field_selector, resync_period=self.resync_period,
                transform=transform, clock=self.clock,
            )
        return self._informers[key]

    @property
    def informers(self) -> list[SharedInformer]:
        return list(self._informers.values())

    async def remove(self, informer: SharedInformer) -> None:
        """Stop an informer and forget it (its watch and cache go away)."""
        for key, inf in list(self._informers.items()):
            if inf is informer:
                del self._informers[key]
        await informer.stop()

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        results = await asyncio.gather(
            *(inf.wait_for_cache_sync(timeout) for inf in self._informers.values())
        )
        return all(results)

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))
