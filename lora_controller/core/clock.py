"""Clocks: the real one, and a fake one that tests advance by hand instead of sleeping.

Time-dependent code (work-queue delays, rate limiters, leader election, polling) takes a `Clock`
so that its tests are deterministic and fast, as kopf does with looptime.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in seconds, a wall clock, and an awaitable sleep on the same time line."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The process's own clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(order=True)
class _Sleeper:
    wake_at: float
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class FakeClock:
    """A clock that moves only when `advance` is called; sleepers wake in time order."""

    def __init__(self, start: float = 1000.0, wall: datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall = wall or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[_Sleeper] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def now(self) -> datetime:
        from datetime import timedelta

        return self._wall + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, _Sleeper(self._now + seconds, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose time has come, in order."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0].wake_at <= target:
            sleeper = heapq.heappop(self._sleepers)
            self._now = max(self._now, sleeper.wake_at)
            if not sleeper.future.done():
                sleeper.future.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)

    @property
    def sleepers(self) -> int:
        return sum(1 for s in self._sleepers if not s.future.done())
