"""The reflector: keeps a Store in step with the API server by list, then watch (client-go's Reflector).

- List (paginated), then watch from the list's resourceVersion with bookmarks and a server-side
  timeout of 5-10 minutes (random, as client-go, so watches of many clients do not end together).
- A watch that ends cleanly is re-opened from the last resourceVersion seen (events or bookmarks).
- `410 Gone` / `Expired`, as an HTTP status or as an ERROR event, means that resourceVersion was
  compacted away: relist from scratch. The relist turns keys that vanished meanwhile into delete
  notifications carrying the last known object (kr8s re-watches at the same version and never
  relists: its caches go stale; this is the fix).
- Connection errors and 429/5xx back off exponentially with jitter, 800 ms to 30 s (client-go's
  numbers), and reset after a watch that worked.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from prometheus_client import Counter

from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.resources import ResourceKind, object_key
from lora_controller.kube.store import Store

JSON = dict[str, Any]
log = structlog.get_logger(__name__)

RELISTS = Counter(
    "lora_controller_reflector_lists_total", "Full lists made by reflectors.", ["resource", "reason"]
)
WATCH_RESTARTS = Counter(
    "lora_controller_reflector_watch_restarts_total",
    "Watches re-opened by reflectors, by why the previous one ended.", ["resource", "reason"],
)

LIST_PAGE_SIZE = 500
MIN_WATCH_TIMEOUT = 300


class ReflectorSink(Protocol):
    """Where a reflector delivers what it learns (the informer)."""

    def on_replace(self, added: list[JSON], updated: list[tuple[JSON, JSON]], deleted: list[JSON]) -> None: ...

    def on_add(self, obj: JSON) -> None: ...

    def on_update(self, old: JSON, new: JSON) -> None: ...

    def on_delete(self, obj: JSON) -> None: ...


class Backoff:
    """Exponential backoff with jitter: client-go's 800 ms initial, x2, capped at 30 s."""

    def __init__(self, *, initial: float = 0.8, cap: float = 30.0, jitter: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self._current = 0.0
        self._rng = rng or random.Random()

    def next(self) -> float:
        self._current = self.initial if self._current == 0 else min(self._current * 2, self.cap)
        return self._current * (1 + self.jitter * self._rng.random())

    def reset(self) -> None:
        self._current = 0.0


class Reflector:
    """List-and-watch one resource kind (optionally one namespace and selectors) into a Store."""

    def __init__(
        self,
        client: KubeClient,
        kind: ResourceKind,
        store: Store,
        sink: ReflectorSink,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Callable[[JSON], JSON] | None = None,
        clock: Clock | None = None,
        watch_timeout: int | None = None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.store = store
        self.sink = sink
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform or (lambda obj: obj)
        self.clock = clock or RealClock()
        self.watch_timeout = watch_timeout
        self.last_resource_version = ""
        self.synced = asyncio.Event()
        self.backoff = Backoff()
        self._log = log.bind(resource=str(kind), namespace=namespace or "*",
                             selector=label_selector or "")

    async def run(self) -> None:
        """Run until cancelled. A reflector that ran before resumes watching from where it was."""
        need_list = not self.last_resource_version
        reason = "initial"
        while True:
            try:
                if need_list:
                    await self._list(reason)
                    need_list = False
                await self._watch()
                WATCH_RESTARTS.labels(str(self.kind), "timeout").inc()
                self.backoff.reset()
            except ApiError as exc:
                if exc.gone:
                    self._log.info("resource version expired, relisting", error=exc.message)
                    WATCH_RESTARTS.labels(str(self.kind), "gone").inc()
                    need_list, reason = True, "gone"
                    continue
                delay = self.backoff.next()
                if exc.retry_after:
                    delay = max(delay, exc.retry_after)
                WATCH_RESTARTS.labels(str(self.kind), exc.reason or "error").inc()
                self._log.warning("list/watch failed, backing off", status=exc.status,
                                  reason=exc.reason, error=exc.message[:300],
                                  delay_s=round(delay, 2))
                if exc.status in (401, 403, 404):
                    need_list, reason = True, exc.reason  # a fresh list after permissions change
                await self.clock.sleep(delay)

    async def _list(self, reason: str) -> None:
        RELISTS.labels(str(self.kind), reason).inc()
        items: list[JSON] = []
        token: str | None = None
        resource_version = ""
        while True:
            page = await self.client.list(
                self.kind, namespace=self.namespace, label_selector=self.label_selector,
                field_selector=self.field_selector, limit=LIST_PAGE_SIZE, continue_token=token,
                timeout=60,
            )
            api_version = self.kind.api_version
            for item in page.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", self.kind.kind)
                items.append(self.transform(item))
            meta = page.get("metadata") or {}
            resource_version = str(meta.get("resourceVersion", ""))
            token = meta.get("continue") or None
            if not token:
                break
        added, updated, deleted = self.store.replace(items)
        self.last_resource_version = resource_version
        self._log.debug("listed", count=len(items), resource_version=resource_version,
                        vanished=len(deleted))
        self.sink.on_replace(added, updated, deleted)
        self.synced.set()

    async def _watch(self) -> None:
        timeout = self.watch_timeout or int(MIN_WATCH_TIMEOUT * (1 + random.random()))
        async for event in self.client.watch(
            self.kind, namespace=self.namespace, resource_version=self.last_resource_version,
            label_selector=self.label_selector, field_selector=self.field_selector,
            timeout_seconds=timeout,
        ):
            obj = event.object
            if event.type == "ERROR":
                code = int(obj.get("code") or 0)
                raise ApiError(code, str(obj.get("reason", "")), str(obj.get("message", "")))
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            if event.type == "BOOKMARK":
                if rv:
                    self.last_resource_version = rv
                continue
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
            obj = self.transform(obj)
            if event.type in ("ADDED", "MODIFIED"):
                old = self.store.upsert(obj)
                if old is None:
                    self.sink.on_add(obj)
                else:
                    self.sink.on_update(old, obj)
            elif event.type == "DELETED":
                old = self.store.delete(object_key(obj))
                self.sink.on_delete(old if old is not None else obj)
            if rv:
                self.last_resource_version = rv
            self.backoff.reset()
