"""Rate limiters: client-go's default_rate_limiters_test.go ported, plus the token bucket's
golang.org/x/time/rate semantics and the default controller limiter, on a fake clock."""

from __future__ import annotations

import itertools
import math

import pytest

from lora_controller.core.clock import FakeClock
from lora_controller.kube.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    WithMaxWaitRateLimiter,
    default_controller_rate_limiter,
    default_item_based_rate_limiter,
)

MS = 0.001


def test_item_exponential_failure_rate_limiter() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(MS, 1.0)
    assert [limiter.when("one") for _ in range(5)] == [1 * MS, 2 * MS, 4 * MS, 8 * MS, 16 * MS]
    assert limiter.num_requeues("one") == 5

    assert limiter.when("two") == 1 * MS
    assert limiter.when("two") == 2 * MS
    assert limiter.num_requeues("two") == 2

    limiter.forget("one")
    assert limiter.num_requeues("one") == 0
    assert limiter.when("one") == 1 * MS
    assert limiter.num_requeues("two") == 2  # forgetting one key leaves the others alone


def test_item_exponential_failure_rate_limiter_overflow() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(MS, 1000.0)
    for _ in range(5):
        limiter.when("one")
    assert limiter.when("one") == 32 * MS

    for _ in range(1000):
        limiter.when("overflow1")
    assert limiter.when("overflow1") == 1000.0

    limiter = ItemExponentialFailureRateLimiter(60.0, 1000 * 3600.0)
    for _ in range(2):
        limiter.when("two")
    assert limiter.when("two") == 4 * 60.0

    for _ in range(5000):  # far past where 2**n overflows a float
        limiter.when("overflow2")
    assert limiter.when("overflow2") == 1000 * 3600.0


def test_item_exponential_reaches_the_cap_and_stays() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(
        5 * MS, 1000.0
    )
    delays = [limiter.when("k") for _ in range(40)]
    assert delays[:3] == [5 * MS, 10 * MS, 20 * MS]
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    # 5 ms * 2**17 = 655 s < 1000 s < 5 ms * 2**18
    assert delays[17] == pytest.approx(655.36)
    assert delays[18:] == [1000.0] * 22


def test_item_fast_slow_rate_limiter() -> None:
    limiter: ItemFastSlowRateLimiter[str] = ItemFastSlowRateLimiter(5 * MS, 10.0, 3)
    assert [limiter.when("one") for _ in range(5)] == [5 * MS, 5 * MS, 5 * MS, 10.0, 10.0]
    assert limiter.num_requeues("one") == 5

    assert limiter.when("two") == 5 * MS
    assert limiter.when("two") == 5 * MS
    assert limiter.num_requeues("two") == 2

    limiter.forget("one")
    assert limiter.num_requeues("one") == 0
    assert limiter.when("one") == 5 * MS


def test_max_of_rate_limiter() -> None:
    limiter: MaxOfRateLimiter[str] = MaxOfRateLimiter(
        ItemFastSlowRateLimiter(5 * MS, 3.0, 3),
        ItemExponentialFailureRateLimiter(MS, 1.0),
    )
    assert [limiter.when("one") for _ in range(5)] == [5 * MS, 5 * MS, 5 * MS, 3.0, 3.0]
    assert limiter.num_requeues("one") == 5

    assert limiter.when("two") == 5 * MS
    assert limiter.when("two") == 5 * MS
    assert limiter.num_requeues("two") == 2

    limiter.forget("one")
    assert limiter.num_requeues("one") == 0
    assert limiter.when("one") == 5 * MS


class StepRateLimiter:
    """client-go's test helper: `base_delay` for the first `threshold` calls, then `max_delay`."""

    def __init__(self, base_delay: float, max_delay: float, threshold: int) -> None:
        self.count = 0
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.threshold = threshold

    def when(self, key: int) -> float:
        self.count += 1
        return self.base_delay if self.count <= self.threshold else self.max_delay

    def num_requeues(self, key: int) -> int:
        return 0

    def forget(self, key: int) -> None:
        return None


def test_with_max_wait_rate_limiter() -> None:
    limiter: WithMaxWaitRateLimiter[int] = WithMaxWaitRateLimiter(
        StepRateLimiter(5 * MS, 1000.0, 100), 500.0
    )
    for i in range(100):
        assert limiter.when(i) == 5 * MS
    for i in range(100, 200):
        assert limiter.when(i) == 500.0


def test_bucket_spends_its_burst_then_spaces_reservations() -> None:
    clock = FakeClock()
    bucket: BucketRateLimiter[str] = BucketRateLimiter(10.0, 100, clock=clock)
    assert [bucket.when(f"k{i}") for i in range(100)] == [0.0] * 100
    # Each further reservation queues 1/qps behind the last, as Reserve().Delay() does.
    assert bucket.when("a") == pytest.approx(0.1)
    assert bucket.when("b") == pytest.approx(0.2)
    assert bucket.when("c") == pytest.approx(0.3)
    assert bucket.tokens == pytest.approx(-3.0)
    assert bucket.num_requeues("a") == 0


async def test_bucket_refills_with_time_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket: BucketRateLimiter[str] = BucketRateLimiter(10.0, 100, clock=clock)
    for i in range(102):
        bucket.when(str(i))
    await clock.advance(1.0)  # -2 + 10 tokens
    assert bucket.tokens == pytest.approx(8.0)
    assert [bucket.when("x") for _ in range(8)] == pytest.approx([0.0] * 8)
    assert bucket.when("x") == pytest.approx(0.1)

    await clock.advance(3600.0)
    assert bucket.tokens == pytest.approx(100.0)  # never more than the burst


async def test_bucket_delay_counts_down_as_time_passes() -> None:
    clock = FakeClock()
    bucket: BucketRateLimiter[str] = BucketRateLimiter(2.0, 1, clock=clock)
    assert bucket.when("a") == 0.0
    assert bucket.when("b") == pytest.approx(0.5)
    await clock.advance(0.25)
    # Tokens are -0.5 now; "c" queues 1/qps behind "b" (due in 0.25 s), so 0.75 s away.
    assert bucket.when("c") == pytest.approx(0.75)


def test_bucket_edge_cases() -> None:
    clock = FakeClock()
    never: BucketRateLimiter[str] = BucketRateLimiter(10.0, 0, clock=clock)
    assert never.when("a") == math.inf  # burst 0: no reservation can ever be granted
    unlimited: BucketRateLimiter[str] = BucketRateLimiter(math.inf, 0, clock=clock)
    assert [unlimited.when("a") for _ in range(1000)] == [0.0] * 1000
    frozen: BucketRateLimiter[str] = BucketRateLimiter(0.0, 2, clock=clock)
    assert [frozen.when("a"), frozen.when("b")] == [0.0, 0.0]
    assert frozen.when("c") == math.inf
    with pytest.raises(ValueError):
        BucketRateLimiter(-1.0, 1, clock=clock)


def test_default_controller_rate_limiter_backs_off_one_key_exponentially() -> None:
    limiter: MaxOfRateLimiter[str] = default_controller_rate_limiter(clock=FakeClock())
    delays = [limiter.when("hot") for _ in range(10)]
    # The bucket (burst 100) never binds for 10 calls; the per-key backoff does.
    assert delays == pytest.approx([0.005 * 2**i for i in range(10)])
    assert limiter.num_requeues("hot") == 10
    limiter.forget("hot")
    assert limiter.num_requeues("hot") == 0
    assert limiter.when("hot") == pytest.approx(0.005)


def test_default_controller_rate_limiter_throttles_a_storm_at_10_qps() -> None:
    limiter: MaxOfRateLimiter[str] = default_controller_rate_limiter(clock=FakeClock())
    delays = [limiter.when(f"key-{i}") for i in range(130)]
    assert delays[:100] == pytest.approx([0.005] * 100)
    assert delays[100:] == pytest.approx([0.1 * n for n in range(1, 31)])


def test_default_controller_rate_limiter_caps_at_1000_seconds() -> None:
    limiter: MaxOfRateLimiter[str] = default_controller_rate_limiter(clock=FakeClock())
    for _ in range(60):
        last = limiter.when("k")
    assert last == 1000.0


def test_default_item_based_rate_limiter() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = default_item_based_rate_limiter()
    assert [limiter.when("k") for _ in range(3)] == [MS, 2 * MS, 4 * MS]
    assert limiter.max_delay == 1000.0
