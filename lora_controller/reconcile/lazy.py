"""Lazy loading: a router asks for an adapter, the reconcile of its namespace loads it.

`loadOnStartup: false` adapters are placed and staged but not loaded until a router asks
(`GET /v1/adapters/{name}/pods?ensure=true`). The ask does not load anything itself: it marks the
adapter *active* and enqueues its namespace, so the namespace's one writer (its reconcile) does the
loading, with the same backoff, status and deletion rules as every other load. Concurrent asks for
one adapter share one request (single flight): a thousand asks make one load per pod.

A request ends when a placed pod confirms the adapter (the answer is `None`), or with a reason
when its loads failed or it is no longer wanted (its resource deleted, its adapter gone). An
active adapter stays active while it is wanted: a pod that restarts gets it back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from lora_controller.scheduler.model import AdapterKey

Verdict = Callable[[AdapterKey], str | None]
"""For a requested adapter: None while it is neither confirmed nor failed, else '' (confirmed) or
why it failed."""


class LazyLoads:
    def __init__(self, enqueue: Callable[[str], None]) -> None:
        self._enqueue = enqueue
        self._requests: dict[AdapterKey, asyncio.Future[str | None]] = {}
        self._active: dict[str, set[AdapterKey]] = {}  # namespace -> active lazy adapters

    def request(self, key: AdapterKey) -> asyncio.Future[str | None]:
        """Ask for `key` to be loaded; the future's result is None once a pod confirms it, or
        the reason it could not be."""
        fut = self._requests.get(key)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._requests[key] = fut
        self._active.setdefault(key.namespace, set()).add(key)
        self._enqueue(key.namespace)
        return fut

    def deactivate(self, key: AdapterKey) -> None:
        """The adapter is lazy again (scaled to zero): loaded only on the next ask."""
        active = self._active.get(key.namespace)
        if active is not None:
            active.discard(key)

    def active(self, namespace: str) -> frozenset[AdapterKey]:
        return frozenset(self._active.get(namespace, ()))

    def pending(self, namespace: str) -> list[AdapterKey]:
        return sorted(k for k, f in self._requests.items()
                      if k.namespace == namespace and not f.done())

    def settle(self, namespace: str, wanted: Mapping[AdapterKey, object], verdict: Verdict) -> None:
        """After a reconcile of `namespace`: answer the requests that have an answer, and forget
        adapters that are no longer wanted."""
        active = self._active.get(namespace)
        if active is not None:
            active.intersection_update(wanted)
            if not active:
                del self._active[namespace]
        for key in self.pending(namespace):
            fut = self._requests[key]
            if key not in wanted:
                fut.set_result(f"adapter {key.name} is no longer wanted by LoraAdapter "
                               f"{key.cr_ref}")
            elif (why := verdict(key)) is not None:
                fut.set_result(why or None)
            if fut.done():
                del self._requests[key]
