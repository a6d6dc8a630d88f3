"""The work queue between informers and reconcilers, with client-go's semantics, on asyncio.

A port of client-go's `util/workqueue` (queue.go, delaying_queue.go, rate_limiting_queue.go):

- `WorkQueue`: a FIFO of keys with a *dirty* set (keys waiting to be processed) and a
  *processing* set (keys handed to a worker and not yet `done`). A key queued twice is queued
  once; a key is never handed to two workers at once; a key added while it is being processed is
  queued again when its worker calls `done`. After `shut_down` new keys are ignored, workers still
  get what was queued, and `get` raises `QueueShutDown` once the queue is empty.
  `shut_down_with_drain` also waits until no key is being processed.
- `DelayingQueue`: `add_after(key, seconds)`, the earlier of two pending times winning, kept in
  a heap and released by one task that sleeps on the injected `Clock` until the next is due.
- `RateLimitingQueue`: `add_rate_limited`, `forget` and `num_requeues` through a `RateLimiter`
  (client-go's default controller limiter unless told otherwise).

Everything runs on one event loop, so the sets need no lock; the queue methods are plain calls
except `get` and `shut_down_with_drain`, which wait. A named queue reports the workqueue metrics
of `lora_controller.kube.metrics` under `name`; an unnamed one reports nothing, as in client-go.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import weakref
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube.metrics import QueueMetrics
from lora_controller.kube.ratelimit import RateLimiter, default_controller_rate_limiter

__all__ = ["DelayingQueue", "QueueShutDown", "RateLimitingQueue", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """Raised by `get` once the queue is shut down and holds nothing more to hand out."""


class WorkQueue(Generic[K]):
    """Dedup FIFO with a processing set: client-go's `workqueue.Typed`."""

    def __init__(self, *, name: str | None = None, clock: Clock | None = None) -> None:
        self.name = name
        self._clock: Clock = clock if clock is not None else RealClock()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._shutting_down = False
        self._drain = False
        self._metrics: QueueMetrics | None = None
        self._add_times: dict[K, float] = {}
        self._start_times: dict[K, float] = {}
        if name:
            self._metrics = QueueMetrics(name)
            ref = weakref.ref(self)
            self._metrics.observe_queue(
                depth=lambda: _depth(ref),
                unfinished=lambda: _unfinished(ref),
                longest=lambda: _longest(ref),
            )

    # -- state ------------------------------------------------------------------------------

    def len(self) -> int:
        """Keys waiting to be handed out (not those being processed)."""
        return len(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def processing(self) -> frozenset[K]:
        """Keys handed to a worker and not yet `done`."""
        return frozenset(self._processing)

    # -- the queue --------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Mark `key` as needing processing; ignored once shutting down."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        m = self._metrics
        if m is not None:
            m.adds.inc()
            if key not in self._add_times:
                self._add_times[key] = self._clock.monotonic()
        if key in self._processing:
            return  # queued again by `done`
        self._queue.append(key)
        if self._getters:
            self._wake_one_getter()

    async def get(self) -> K:
        """Wait for a key and mark it as processing; the caller must call `done(key)`.

        Raises `QueueShutDown` when the queue is shut down and empty.
        """
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown(self.name or "workqueue")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                woken = waiter.done() and not waiter.cancelled()
                waiter.cancel()
                try:
                    self._getters.remove(waiter)
                except ValueError:
                    pass
                if woken and self._queue:
                    self._wake_one_getter()  # pass on the wake-up this getter will not use
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        m = self._metrics
        if m is not None:
            now = self._clock.monotonic()
            self._start_times[key] = now
            added = self._add_times.pop(key, None)
            if added is not None:
                m.queue_duration.observe(now - added)
        return key

    def done(self, key: K) -> None:
        """Finish processing `key`; if it was added meanwhile, queue it again.

        A key that is not being processed is left alone.
        """
        if key not in self._processing:
            return
        self._processing.discard(key)
        m = self._metrics
        if m is not None:
            started = self._start_times.pop(key, None)
            if started is not None:
                m.work_duration.observe(self._clock.monotonic() - started)
        if key in self._dirty:
            self._queue.append(key)
            if self._getters:
                self._wake_one_getter()
        elif not self._processing and self._drain_waiters:
            self._wake_drain_waiters()

    def shut_down(self) -> None:
        """Ignore new keys from now on; stop any `shut_down_with_drain` from waiting."""
        self._drain = False
        self._shutting_down = True
        self._wake_all_getters()
        self._wake_drain_waiters()

    async def shut_down_with_drain(self) -> None:
        """Shut down, then wait until no key is being processed (`shut_down` cuts it short).

        Workers must call `done` on what they got, or this waits forever.
        """
        self._drain = True
        self._shutting_down = True
        self._wake_all_getters()
        loop = asyncio.get_running_loop()
        while self._processing and self._drain:
            waiter: asyncio.Future[None] = loop.create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
                    self._drain_waiters.remove(waiter)

    # -- internals --------------------------------------------------------------------------

    def _wake_one_getter(self) -> None:
        getters = self._getters
        while getters:
            waiter = getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all_getters(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _depth(ref: weakref.ref[WorkQueue[K]]) -> float:
    """Keys waiting to be processed, counting those re-added while in processing (client-go's)."""
    queue = ref()
    return 0.0 if queue is None else float(len(queue._dirty))


def _unfinished(ref: weakref.ref[WorkQueue[K]]) -> float:
    queue = ref()
    if queue is None or queue.shutting_down:
        return 0.0
    now = queue._clock.monotonic()
    return sum(now - t for t in tuple(queue._start_times.values()))


def _longest(ref: weakref.ref[WorkQueue[K]]) -> float:
    queue = ref()
    if queue is None or queue.shutting_down:
        return 0.0
    now = queue._clock.monotonic()
    return max((now - t for t in tuple(queue._start_times.values())), default=0.0)


class DelayingQueue(WorkQueue[K]):
    """A `WorkQueue` that can add a key after a delay: client-go's `delayingType`."""

    def __init__(self, *, name: str | None = None, clock: Clock | None = None) -> None:
        super().__init__(name=name, clock=clock)
        # Heap entries are (ready_at, seq, key); an entry is live while `_waiting[key]` holds its
        # (ready_at, seq): one superseded by an earlier time is skipped when it surfaces.
        self._heap: list[tuple[float, int, K]] = []
        self._waiting: dict[K, tuple[float, int]] = {}
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_generation = 0

    @property
    def waiting(self) -> int:
        """Keys waiting for their delay to pass."""
        return len(self._waiting)

    def ready_at(self, key: K) -> float | None:
        """The clock time at which a waiting `key` will be added, if it is waiting."""
        entry = self._waiting.get(key)
        return entry[0] if entry is not None else None

    def add_after(self, key: K, seconds: float) -> None:
        """Add `key` once `seconds` have passed; of two pending times the earlier wins.

        A delay of zero or less adds at once; an infinite delay never adds. Ignored once
        shutting down. Counts as a retry in `workqueue_retries_total`.
        """
        if self._shutting_down:
            return
        if math.isnan(seconds):
            raise ValueError("delay is NaN")
        if self._metrics is not None:
            self._metrics.retries.inc()
        if seconds <= 0:
            self.add(key)
            return
        if math.isinf(seconds):
            return
        ready_at = self._clock.monotonic() + seconds
        existing = self._waiting.get(key)
        if existing is not None and existing[0] <= ready_at:
            return
        seq = next(self._seq)
        self._waiting[key] = (ready_at, seq)  # supersedes any later entry of the key
        heapq.heappush(self._heap, (ready_at, seq, key))
        if self._timer is None or self._heap[0][1] == seq:
            self._restart_timer()  # none yet, or it sleeps until a later key than this one

    def shut_down(self) -> None:
        """Shut down, dropping keys that still wait for their delay."""
        super().shut_down()
        self._stop_timer()

    async def shut_down_with_drain(self) -> None:
        self._stop_timer()
        await super().shut_down_with_drain()

    def _stop_timer(self) -> None:
        self._heap.clear()
        self._waiting.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release_due(self) -> None:
        heap, waiting = self._heap, self._waiting
        now = self._clock.monotonic()
        while heap and heap[0][0] <= now:
            ready_at, seq, key = heapq.heappop(heap)
            if waiting.get(key) == (ready_at, seq):
                del waiting[key]
                self.add(key)
        while heap and waiting.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)  # superseded entries at the top

    def _restart_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_generation += 1
        self._timer = asyncio.get_running_loop().create_task(
            self._release_loop(self._timer_generation),
            name=f"workqueue-delay:{self.name or id(self)}",
        )

    async def _release_loop(self, generation: int) -> None:
        """Sleep on the clock until the earliest key is due, add what is due; end when idle.

        `add_after` replaces this task by a new one when a key due sooner arrives.
        """
        try:
            while True:
                self._release_due()
                if not self._heap or self._shutting_down:
                    return
                await self._clock.sleep(self._heap[0][0] - self._clock.monotonic())
        finally:
            if self._timer_generation == generation:  # not replaced by a newer timer
                self._timer = None


class RateLimitingQueue(DelayingQueue[K]):
    """A `DelayingQueue` whose `add_rate_limited` waits as long as its rate limiter says."""

    def __init__(
        self,
        *,
        name: str | None = None,
        rate_limiter: RateLimiter[K] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=name, clock=clock)
        self.rate_limiter: RateLimiter[K] = (
            rate_limiter
            if rate_limiter is not None
            else default_controller_rate_limiter(clock=self._clock)
        )

    def add_rate_limited(self, key: K) -> None:
        """Add `key` after the rate limiter's delay (which counts one more failure)."""
        if self._shutting_down:
            return
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """Stop counting failures of `key`; it still needs `done`."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)
