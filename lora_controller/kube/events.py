"""The event recorder: events.k8s.io/v1 Events, repeated ones aggregated into a series.

As client-go's events broadcaster: the first occurrence of an event (same object, type, reason,
action and note) creates an Event; repeats only bump an in-memory count, and the Event's `series`
(count, lastObservedTime) is patched at most once per `series_interval`, so a failing loop never
floods the API server. Recording never raises: an event that cannot be written is logged and dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import structlog

from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.resources import EVENTS

JSON = dict[str, Any]
log = structlog.get_logger(__name__)

NOTE_MAX = 1024


def _micro_time(clock: Clock) -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Series:
    name: str
    namespace: str
    count: int
    last_patch: float
    patched_count: int


class EventRecorder:
    def __init__(
        self,
        client: KubeClient,
        *,
        controller: str = "production-stack.vllm-project/lora-controller",
        instance: str,
        clock: Clock | None = None,
        series_interval: float = 30.0,
        cache_size: int = 4096,
    ) -> None:
        self.client = client
        self.controller = controller
        self.instance = instance
        self.clock = clock or RealClock()
        self.series_interval = series_interval
        self.cache_size = cache_size
        self._series: OrderedDict[tuple[str, ...], _Series] = OrderedDict()
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}  # one per event identity
        self._writes = asyncio.Semaphore(8)  # concurrent API calls
        self._lock = asyncio.Lock()  # flush
        self.created = 0
        self.patched = 0

    async def record(
        self, regarding: JSON, *, type: str, reason: str, action: str, note: str
    ) -> None:
        """Record an event about `regarding` (an API object); type is Normal or Warning."""
        meta = regarding.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        note = note[:NOTE_MAX]
        digest = hashlib.blake2b(note.encode(), digest_size=12).hexdigest()
        key = (str(meta.get("uid", "")), type, reason, action, digest)  # small, whatever the note
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock, self._writes:
                await self._record(regarding, meta, namespace, key, type=type, reason=reason,
                                   action=action, note=note)
        except (ApiError, TimeoutError) as exc:
            log.warning("event not recorded", reason=reason, error=str(exc)[:300])
        finally:
            if not lock.locked() and key not in self._series:
                self._locks.pop(key, None)

    async def _record(
        self, regarding: JSON, meta: JSON, namespace: str, key: tuple[str, ...], *,
        type: str, reason: str, action: str, note: str,
    ) -> None:
        now = self.clock.monotonic()
        series = self._series.get(key)
        if series is not None:
            series.count += 1
            self._series.move_to_end(key)
            if now - series.last_patch < self.series_interval:
                return
            await self.client.patch(
                EVENTS, series.name,
                {"series": {"count": series.count, "lastObservedTime": _micro_time(self.clock)}},
                namespace=series.namespace,
            )
            series.last_patch = now
            series.patched_count = series.count
            self.patched += 1
            return
        name = f"{meta.get('name', 'object')}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "eventTime": _micro_time(self.clock),
            "reportingController": self.controller,
            "reportingInstance": self.instance[:128],
            "action": action[:128],
            "reason": reason[:128],
            "type": type,
            "note": note,
            "regarding": {
                "apiVersion": regarding.get("apiVersion"),
                "kind": regarding.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
        }
        await self.client.create(EVENTS, body, namespace=namespace)
        self.created += 1
        self._series[key] = _Series(name, namespace, 1, now, 1)
        while len(self._series) > self.cache_size:
            old, _ = self._series.popitem(last=False)
            lock = self._locks.get(old)
            if lock is not None and not lock.locked():
                del self._locks[old]

    async def flush(self) -> None:
        """Write the counts of series that changed since their last patch (on shutdown)."""
        async with self._lock:
            for series in self._series.values():
                if series.count != series.patched_count:
                    try:
                        await self.client.patch(
                            EVENTS, series.name,
                            {"series": {"count": series.count,
                                        "lastObservedTime": _micro_time(self.clock)}},
                            namespace=series.namespace,
                        )
                        series.patched_count = series.count
                        self.patched += 1
                    except (ApiError, TimeoutError) as exc:
                        log.debug("event series not flushed", error=str(exc)[:200])
