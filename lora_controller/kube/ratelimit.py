"""Rate limiters that decide how long a failed key waits before it is retried.

A port of client-go's `util/workqueue/default_rate_limiters.go`, in seconds instead of Go
durations: a per-key exponential backoff, a fast-then-slow limiter, a token bucket with
`golang.org/x/time/rate` semantics (`Reserve().Delay()`), the max of several limiters, and a cap.
`default_controller_rate_limiter` is client-go's `DefaultControllerRateLimiter`: the worse of a
per-key exponential backoff from 5 ms to 1000 s and an overall bucket of 10 qps with a burst of
100, so one hot key backs off on its own while a storm of failures is throttled as a whole.

Pure logic: the token bucket reads time from an injected `Clock`, nothing here sleeps.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from lora_controller.core.clock import Clock, RealClock

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "ItemFastSlowRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "WithMaxWaitRateLimiter",
    "default_controller_rate_limiter",
    "default_item_based_rate_limiter",
]

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[K_contra]):
    """Decides each key's wait before a retry, and keeps count of its failures."""

    def when(self, key: K_contra) -> float:
        """Seconds `key` should wait now; calling it records one more failure."""
        ...

    def forget(self, key: K_contra) -> None:
        """Stop tracking `key` (it succeeded, or was given up on)."""
        ...

    def num_requeues(self, key: K_contra) -> int:
        """How many failures `key` has had since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter(Generic[K]):
    """`base_delay * 2**failures`, capped at `max_delay`; per key, never overflowing."""

    def __init__(self, base_delay: float, max_delay: float) -> None:
        if base_delay < 0 or max_delay < 0:
            raise ValueError("delays must not be negative")
        self._failures: dict[K, int] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay

    def when(self, key: K) -> float:
        exp = self._failures.get(key, 0)
        self._failures[key] = exp + 1
        if exp >= 1024:  # 2.0**1024 overflows a float; the answer is the cap long before that
            return self.max_delay
        backoff = self.base_delay * 2.0**exp
        return self.max_delay if backoff > self.max_delay else backoff

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)


class ItemFastSlowRateLimiter(Generic[K]):
    """`fast_delay` for the first `max_fast_attempts` failures of a key, `slow_delay` after."""

    def __init__(self, fast_delay: float, slow_delay: float, max_fast_attempts: int) -> None:
        self._failures: dict[K, int] = {}
        self.fast_delay = fast_delay
        self.slow_delay = slow_delay
        self.max_fast_attempts = max_fast_attempts

    def when(self, key: K) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        return self.fast_delay if failures <= self.max_fast_attempts else self.slow_delay

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)


class BucketRateLimiter(Generic[K]):
    """An overall token bucket: `qps` tokens a second, at most `burst` saved; not per key.

    `when` reserves one token the way `rate.Limiter.Reserve().Delay()` does: the reservation is
    always granted, possibly in the future, and later callers queue behind it. A bucket that can
    never grant (`burst` < 1 with a finite rate) answers `math.inf`.
    """

    def __init__(self, qps: float, burst: int, *, clock: Clock | None = None) -> None:
        if qps < 0 or burst < 0:
            raise ValueError("qps and burst must not be negative")
        self.qps = qps
        self.burst = burst
        self._clock: Clock = clock if clock is not None else RealClock()
        self._tokens = float(burst)
        self._last: float | None = None

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now (negative while reservations wait for the future)."""
        return self._advance(self._clock.monotonic())

    def _advance(self, now: float) -> float:
        last = self._last if self._last is not None and self._last <= now else now
        tokens = self._tokens + (now - last) * self.qps
        return min(tokens, float(self.burst))

    def when(self, key: K) -> float:
        if math.isinf(self.qps):
            return 0.0
        now = self._clock.monotonic()
        tokens = self._advance(now) - 1.0
        wait = 0.0
        if tokens < 0:
            wait = -tokens / self.qps if self.qps > 0 else math.inf
        if self.burst < 1 or math.isinf(wait):
            return math.inf  # not granted: the reservation is not recorded, as in x/time/rate
        self._last = now
        self._tokens = tokens
        return max(0.0, now + wait - self._clock.monotonic())

    def num_requeues(self, key: K) -> int:
        return 0

    def forget(self, key: K) -> None:
        return None


class MaxOfRateLimiter(Generic[K]):
    """Asks every limiter (each records the failure) and answers with the longest wait."""

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        self.limiters = limiters

    def when(self, key: K) -> float:
        longest = 0.0
        for limiter in self.limiters:
            longest = max(longest, limiter.when(key))
        return longest

    def num_requeues(self, key: K) -> int:
        return max((limiter.num_requeues(key) for limiter in self.limiters), default=0)

    def forget(self, key: K) -> None:
        for limiter in self.limiters:
            limiter.forget(key)


class WithMaxWaitRateLimiter(Generic[K]):
    """Another limiter's answer, never more than `max_delay`."""

    def __init__(self, limiter: RateLimiter[K], max_delay: float) -> None:
        self.limiter = limiter
        self.max_delay = max_delay

    def when(self, key: K) -> float:
        return min(self.limiter.when(key), self.max_delay)

    def num_requeues(self, key: K) -> int:
        return self.limiter.num_requeues(key)

    def forget(self, key: K) -> None:
        self.limiter.forget(key)


def default_controller_rate_limiter(*, clock: Clock | None = None) -> MaxOfRateLimiter[K]:
    """client-go's default: max(per-key exponential 5 ms..1000 s, bucket 10 qps / burst 100)."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(10.0, 100, clock=clock),
    )


def default_item_based_rate_limiter() -> ItemExponentialFailureRateLimiter[K]:
    """client-go's `DefaultItemBasedRateLimiter`: per-key exponential 1 ms..1000 s."""
    return ItemExponentialFailureRateLimiter(0.001, 1000.0)
