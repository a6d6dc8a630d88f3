"""The controller runner: N workers take keys off a rate-limited work queue and reconcile them.

It follows controller-runtime's `pkg/internal/controller/controller.go`. A reconcile gets a key,
not an event (level-based), and its outcome decides what happens to the key:

- it raises `TerminalError`: not retried (the key comes back only when something enqueues it);
- it raises anything else, or runs past `reconcile_timeout`: retried through the rate limiter,
  so a failing key backs off exponentially and a storm of failures is throttled overall;
- it returns `Result(requeue_after=s)`: its failures are forgotten and it comes back after `s`;
- it returns `Result(requeue=True)`: retried through the rate limiter;
- it returns `None` or an empty `Result`: its failures are forgotten.

The queue guarantees that one key is never reconciled by two workers at once. An exception in a
reconcile is logged and counted and never ends its worker; only cancellation ends a worker.
Metrics are controller-runtime's `controller_runtime_*` series, labelled `controller`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube import metrics
from lora_controller.kube.ratelimit import default_controller_rate_limiter
from lora_controller.kube.workqueue import QueueShutDown, RateLimitingQueue

__all__ = ["Controller", "Reconcile", "Result", "TerminalError"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for when it did not fail."""

    requeue_after: float | None = None
    """Reconcile the key again after this many seconds (its failure count is reset)."""
    requeue: bool = False
    """Reconcile the key again after the rate limiter's delay (ignored if `requeue_after` > 0)."""


class TerminalError(Exception):
    """A reconcile failure that retrying cannot fix: logged and counted, never requeued."""


Reconcile = Callable[[K], Awaitable[Result | None]]

_SUCCESS = "success"
_ERROR = "error"
_REQUEUE = "requeue"
_REQUEUE_AFTER = "requeue_after"


class Controller(Generic[K]):
    """Runs `workers` concurrent reconciles over the keys of one queue."""

    def __init__(
        self,
        name: str,
        *,
        reconcile: Reconcile[K],
        workers: int = 1,
        queue: RateLimitingQueue[K] | None = None,
        clock: Clock | None = None,
        logger: Any = None,
        reconcile_timeout: float | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a controller needs at least one worker")
        if reconcile_timeout is not None and reconcile_timeout <= 0:
            raise ValueError("reconcile_timeout must be positive")
        self.name = name
        self.workers = workers
        self.reconcile_timeout = reconcile_timeout
        self._reconcile = reconcile
        self._clock: Clock = clock if clock is not None else RealClock()
        self.queue: RateLimitingQueue[K] = (
            queue
            if queue is not None
            else RateLimitingQueue(
                name=name,
                rate_limiter=default_controller_rate_limiter(clock=self._clock),
                clock=self._clock,
            )
        )
        self._log: Any = (logger if logger is not None else structlog.get_logger(__name__)).bind(
            controller=name
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._total = {
            result: metrics.RECONCILE_TOTAL.labels(name, result)
            for result in (_SUCCESS, _ERROR, _REQUEUE, _REQUEUE_AFTER)
        }
        self._errors = metrics.RECONCILE_ERRORS.labels(name)
        self._terminal_errors = metrics.TERMINAL_RECONCILE_ERRORS.labels(name)
        self._timeouts = metrics.RECONCILE_TIMEOUTS.labels(name)
        self._time = metrics.RECONCILE_TIME.labels(name)
        self._busy = 0  # workers inside a reconcile, read by the active-workers gauge
        self._active = metrics.CONTROLLER_ACTIVE_WORKERS.labels(name)
        self._max_workers = metrics.CONTROLLER_MAX_CONCURRENT_RECONCILES.labels(name)

    # -- feeding ----------------------------------------------------------------------------

    def enqueue(self, key: K) -> None:
        """Ask for `key` to be reconciled (deduplicated with any pending request)."""
        self.queue.add(key)

    def enqueue_after(self, key: K, seconds: float) -> None:
        """Ask for `key` to be reconciled after `seconds`."""
        self.queue.add_after(key, seconds)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether workers are started and not all finished."""
        return any(not task.done() for task in self._tasks)

    def start(self) -> None:
        """Start the workers on the running loop; a controller starts once."""
        if self._started:
            raise RuntimeError(f"controller {self.name!r} was started more than once")
        self._started = True
        self._max_workers.set(self.workers)
        ref = weakref.ref(self)
        self._active.set_function(lambda: _busy(ref))
        for result in self._total.values():
            result.inc(0)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(), name=f"controller:{self.name}:worker-{i}")
            for i in range(self.workers)
        ]
        self._log.info("controller started", workers=self.workers)

    async def stop(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking new keys; with `drain`, finish the queued ones first, else cancel.

        A drain longer than `timeout` seconds is cut short by cancelling the workers.
        """
        self.queue.shut_down()
        if not self._tasks:
            return
        if drain:
            pending = set(self._tasks)
            if timeout is None:
                await asyncio.wait(pending)
            else:
                _, pending = await asyncio.wait(pending, timeout=timeout)
                if pending:
                    self._log.warning("drain timed out, cancelling workers", timeout=timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._log.info("controller stopped", drained=drain)

    async def run(
        self, stop: asyncio.Event, *, drain: bool = True, drain_timeout: float | None = None
    ) -> None:
        """Start, run until `stop` is set, then stop; cancelling `run` stops without draining."""
        self.start()
        try:
            await stop.wait()
        except asyncio.CancelledError:
            await asyncio.shield(self.stop(drain=False))
            raise
        await self.stop(drain=drain, timeout=drain_timeout)

    # -- work -------------------------------------------------------------------------------

    async def _worker(self) -> None:
        queue = self.queue
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            self._busy += 1
            try:
                await self._handle(key)
            finally:
                self._busy -= 1
                queue.done(key)

    async def _reconcile_with_deadline(self, key: K, timeout: float) -> Result | None:
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await self._reconcile(key)
        except TimeoutError:
            if not deadline.expired():
                raise  # the reconcile's own timeout, not ours
            self._timeouts.inc()
            raise TimeoutError(f"reconcile did not finish within {timeout} s") from None

    async def _handle(self, key: K) -> None:
        """Reconcile one key and requeue it as its outcome asks (controller-runtime's handler)."""
        queue = self.queue
        started = self._clock.monotonic()
        try:
            if self.reconcile_timeout is None:
                result = await self._reconcile(key)
            else:
                result = await self._reconcile_with_deadline(key, self.reconcile_timeout)
            if result is not None and not isinstance(result, Result):
                raise TypeError(f"reconcile returned {type(result).__name__}, not Result or None")
        except TerminalError as exc:
            queue.forget(key)
            self._terminal_errors.inc()
            self._errors.inc()
            self._total[_ERROR].inc()
            self._log.error("reconcile failed, not retrying", key=key, error=str(exc))
            return
        except Exception as exc:
            queue.add_rate_limited(key)
            self._errors.inc()
            self._total[_ERROR].inc()
            self._log.error(
                "reconcile failed, retrying",
                key=key,
                error=repr(exc),
                requeues=queue.num_requeues(key),
                exc_info=exc,
            )
            return
        finally:
            self._time.observe(self._clock.monotonic() - started)
        if result is not None and result.requeue_after is not None and result.requeue_after > 0:
            queue.forget(key)
            queue.add_after(key, result.requeue_after)
            self._total[_REQUEUE_AFTER].inc()
        elif result is not None and result.requeue:
            queue.add_rate_limited(key)
            self._total[_REQUEUE].inc()
        else:
            queue.forget(key)
            self._total[_SUCCESS].inc()


def _busy(ref: weakref.ref[Controller[Any]]) -> float:
    controller = ref()
    return 0.0 if controller is None else float(controller._busy)
