"""The controller runner on a fake clock: outcomes of a reconcile (success, error, terminal error,
requeue, requeue_after, timeout), workers that survive failures, one key per worker, shutdown."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from lora_controller.core.clock import FakeClock
from lora_controller.kube.ratelimit import ItemExponentialFailureRateLimiter
from lora_controller.kube.runner import Controller, Result, TerminalError
from lora_controller.kube.workqueue import RateLimitingQueue


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Let the loop run until `condition` holds (real time only bounds a broken test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.001)


def unique() -> str:
    return f"ctl-{uuid.uuid4().hex[:10]}"


def total(name: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "controller_runtime_reconcile_total", {"controller": name, "result": result}
    )
    assert value is not None
    return value


def counter(metric: str, name: str) -> float:
    value = REGISTRY.get_sample_value(metric, {"controller": name})
    assert value is not None, f"{metric} not exported for {name}"
    return value


class Recorder:
    """A reconcile function that records calls and answers from a script per key."""

    def __init__(self, clock: FakeClock, script: dict[str, list[object]] | None = None) -> None:
        self.clock = clock
        self.script = script or {}
        self.calls: list[tuple[str, float]] = []

    def times(self, key: str) -> list[float]:
        return [t - self.clock._start for k, t in self.calls if k == key]

    def count(self, key: str) -> int:
        return sum(1 for k, _ in self.calls if k == key)

    async def __call__(self, key: str) -> Result | None:
        self.calls.append((key, self.clock.monotonic()))
        answers = self.script.get(key)
        answer = answers.pop(0) if answers else None
        if isinstance(answer, BaseException):
            raise answer
        assert answer is None or isinstance(answer, Result)
        return answer


async def test_reconciles_each_enqueued_key_once_and_forgets_it() -> None:
    clock = FakeClock()
    name = unique()
    reconcile = Recorder(clock)
    ctl: Controller[str] = Controller(name, reconcile=reconcile, workers=2, clock=clock)
    ctl.start()
    for key in ["a", "b", "a", "c", "b"]:
        ctl.enqueue(key)
    await wait_for(lambda: len(reconcile.calls) == 3)
    await settle()
    assert sorted(k for k, _ in reconcile.calls) == ["a", "b", "c"]
    assert all(ctl.queue.num_requeues(k) == 0 for k in "abc")
    assert total(name, "success") == 3
    assert total(name, "error") == 0
    assert counter("controller_runtime_max_concurrent_reconciles", name) == 2
    assert counter("controller_runtime_active_workers", name) == 0
    await ctl.stop()
    assert not ctl.running


async def test_errors_are_retried_with_exponential_backoff() -> None:
    clock = FakeClock()
    name = unique()
    reconcile = Recorder(clock, {"k": [RuntimeError("boom")] * 3})
    ctl: Controller[str] = Controller(name, reconcile=reconcile, workers=1, clock=clock)
    ctl.start()
    ctl.enqueue("k")
    await settle()
    assert reconcile.count("k") == 1
    assert ctl.queue.num_requeues("k") == 1

    for step in (0.004, 0.001, 0.009, 0.001, 0.019, 0.001):
        await clock.advance(step)
        await settle()
    # 5 ms, then 10 ms, then 20 ms after each failure (client-go's default controller limiter).
    assert reconcile.times("k") == pytest.approx([0.0, 0.005, 0.015, 0.035])
    assert ctl.queue.num_requeues("k") == 0  # the fourth call succeeded: forgotten
    assert counter("controller_runtime_reconcile_errors_total", name) == 3
    assert total(name, "error") == 3
    assert total(name, "success") == 1
    await clock.advance(1000.0)
    await settle()
    assert reconcile.count("k") == 4  # nothing more: success is not requeued
    await ctl.stop()


async def test_a_terminal_error_is_not_retried() -> None:
    clock = FakeClock()
    name = unique()
    reconcile = Recorder(clock, {"k": [TerminalError("bad spec")]})
    with capture_logs() as logs:
        ctl: Controller[str] = Controller(name, reconcile=reconcile, workers=1, clock=clock)
        ctl.start()
        ctl.enqueue("k")
        await settle()
        await clock.advance(2000.0)
        await settle()
    assert reconcile.count("k") == 1
    assert ctl.queue.num_requeues("k") == 0
    assert ctl.queue.waiting == 0 and ctl.queue.len() == 0
    assert counter("controller_runtime_terminal_reconcile_errors_total", name) == 1
    assert counter("controller_runtime_reconcile_errors_total", name) == 1
    assert total(name, "error") == 1
    failure = [e for e in logs if e.get("key") == "k" and e["log_level"] == "error"]
    assert failure and "bad spec" in failure[0]["error"]

    ctl.enqueue("k")  # it comes back when something asks for it again
    await settle()
    assert reconcile.count("k") == 2
    await ctl.stop()


async def test_requeue_after_comes_back_on_time_with_failures_forgotten() -> None:
    clock = FakeClock()
    name = unique()
    reconcile = Recorder(clock, {"k": [RuntimeError("once"), Result(requeue_after=30.0)]})
    ctl: Controller[str] = Controller(name, reconcile=reconcile, workers=1, clock=clock)
    ctl.start()
    ctl.enqueue("k")
    await settle()
    await clock.advance(0.005)
    await settle()
    assert reconcile.count("k") == 2
    assert ctl.queue.num_requeues("k") == 0  # Forget before AddAfter
    await clock.advance(29.99)
    await settle()
    assert reconcile.count("k") == 2
    await clock.advance(1.0)
    await settle()
    assert reconcile.times("k") == pytest.approx([0.0, 0.005, 30.005])
    assert total(name, "requeue_after") == 1
    # The controller's queue carries its name: one rate-limited retry plus one requeue_after.
    assert REGISTRY.get_sample_value("workqueue_retries_total", {"name": name}) == 2
    await ctl.stop()


async def test_requeue_goes_through_the_rate_limiter() -> None:
    clock = FakeClock()
    name = unique()
    reconcile = Recorder(clock, {"k": [Result(requeue=True), Result(requeue=True)]})
    ctl: Controller[str] = Controller(name, reconcile=reconcile, workers=1, clock=clock)
    ctl.start()
    ctl.enqueue("k")
    await settle()
    assert ctl.queue.num_requeues("k") == 1
    await clock.advance(0.005)
    await settle()
    assert ctl.queue.num_requeues("k") == 2
    await clock.advance(0.010)
    await settle()
    assert reconcile.times("k") == pytest.approx([0.0, 0.005, 0.015])
    assert total(name, "requeue") == 2
    assert total(name, "success") == 1
    assert ctl.queue.num_requeues("k") == 0
    await ctl.stop()


async def test_requeue_after_wins_over_requeue() -> None:
    clock = FakeClock()
    reconcile = Recorder(clock, {"k": [Result(requeue_after=2.0, requeue=True)]})
    ctl: Controller[str] = Controller(unique(), reconcile=reconcile, workers=1, clock=clock)
    ctl.start()
    ctl.enqueue("k")
    await settle()
    await clock.advance(1.0)
    await settle()
    assert reconcile.count("k") == 1
    await clock.advance(1.0)
    await settle()
    assert reconcile.times("k") == pytest.approx([0.0, 2.0])
    await ctl.stop()


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("boom"),
        KeyError("missing"),
        AssertionError("broken invariant"),
        ZeroDivisionError(),
    ],
)
async def test_an_exception_never_kills_the_worker(error: Exception) -> None:
    clock = FakeClock()
    name = unique()
    reconcile = Recorder(clock, {"bad": [error]})
    with capture_logs() as logs:
        ctl: Controller[str] = Controller(name, reconcile=reconcile, workers=1, clock=clock)
        ctl.start()
        ctl.enqueue("bad")
        ctl.enqueue("good")
        await settle()
    assert [k for k, _ in reconcile.calls] == ["bad", "good"]
    assert ctl.running
    failure = [e for e in logs if e.get("key") == "bad"]
    assert failure and failure[0]["log_level"] == "error"
    assert type(error).__name__ in failure[0]["error"]
    await clock.advance(0.005)
    await settle()
    assert reconcile.count("bad") == 2  # retried by the same surviving worker
    await ctl.stop()


async def test_a_reconcile_returning_something_else_is_an_error() -> None:
    clock = FakeClock()
    name = unique()

    async def wrong(key: str) -> Result | None:
        return "ok"  # type: ignore[return-value]

    ctl: Controller[str] = Controller(name, reconcile=wrong, workers=1, clock=clock)
    ctl.start()
    ctl.enqueue("k")
    await settle()
    assert total(name, "error") == 1
    assert ctl.queue.num_requeues("k") == 1
    await ctl.stop()


async def test_a_key_is_never_reconciled_by_two_workers_at_once() -> None:
    clock = FakeClock()
    in_flight: Counter[str] = Counter()
    most_at_once = 0
    calls: Counter[str] = Counter()
    ctl: Controller[str]

    async def reconcile(key: str) -> None:
        nonlocal most_at_once
        in_flight[key] += 1
        assert in_flight[key] == 1, f"{key} reconciled twice at once"
        most_at_once = max(most_at_once, sum(in_flight.values()))
        calls[key] += 1
        if calls[key] < 5:
            ctl.enqueue(key)  # an event arrives while the key is being reconciled
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight[key] -= 1

    ctl = Controller(unique(), reconcile=reconcile, workers=8, clock=clock)
    ctl.start()
    keys = [f"k{i}" for i in range(5)]
    for _ in range(3):
        for key in keys:
            ctl.enqueue(key)
            await asyncio.sleep(0)
    await wait_for(lambda: all(calls[k] == 5 for k in keys) and not any(in_flight.values()))
    await settle()
    assert all(calls[k] == 5 for k in keys)  # each re-enqueue while running gave one more call
    assert most_at_once > 1  # the workers did run in parallel
    await ctl.stop()


async def test_stop_with_drain_finishes_the_queued_keys() -> None:
    clock = FakeClock()
    reconcile = Recorder(clock)
    ctl: Controller[str] = Controller(unique(), reconcile=reconcile, workers=2, clock=clock)
    for i in range(20):
        ctl.enqueue(f"k{i}")
    ctl.start()
    await ctl.stop(drain=True)
    assert sorted(k for k, _ in reconcile.calls) == sorted(f"k{i}" for i in range(20))
    ctl.enqueue("late")
    await settle()
    assert reconcile.count("late") == 0
    assert not ctl.running


async def test_stop_without_drain_cancels_the_reconciles_in_flight() -> None:
    clock = FakeClock()
    started = asyncio.Event()
    cancelled: list[str] = []
    reconciled: list[str] = []

    async def reconcile(key: str) -> None:
        reconciled.append(key)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(key)
            raise

    ctl: Controller[str] = Controller(unique(), reconcile=reconcile, workers=1, clock=clock)
    ctl.start()
    ctl.enqueue("stuck")
    ctl.enqueue("queued")
    await asyncio.wait_for(started.wait(), 2)
    await asyncio.wait_for(ctl.stop(drain=False), 2)
    assert cancelled == ["stuck"]
    assert reconciled == ["stuck"]
    assert not ctl.running
    assert not ctl.queue.processing  # done() ran although the reconcile was cancelled


async def test_a_drain_longer_than_its_timeout_is_cut_short() -> None:
    clock = FakeClock()

    async def reconcile(key: str) -> None:
        await asyncio.Event().wait()

    ctl: Controller[str] = Controller(unique(), reconcile=reconcile, workers=1, clock=clock)
    ctl.start()
    ctl.enqueue("stuck")
    await settle()
    with capture_logs() as logs:
        await asyncio.wait_for(ctl.stop(drain=True, timeout=0.05), 2)
    assert not ctl.running
    assert any("drain timed out" in e["event"] for e in logs)


async def test_reconcile_timeout_is_an_error_that_is_retried() -> None:
    clock = FakeClock()
    name = unique()
    calls = 0

    async def reconcile(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)  # real loop time: the controller's deadline is 20 ms

    ctl: Controller[str] = Controller(
        name, reconcile=reconcile, workers=1, clock=clock, reconcile_timeout=0.02
    )
    ctl.start()
    ctl.enqueue("k")
    await wait_for(lambda: total(name, "error") == 1)
    assert counter("controller_runtime_reconcile_timeouts_total", name) == 1
    assert ctl.queue.num_requeues("k") == 1
    await clock.advance(0.005)
    await settle()
    assert calls == 2
    assert total(name, "success") == 1
    await ctl.stop()


async def test_a_timeout_raised_by_the_reconcile_itself_is_not_the_controllers() -> None:
    clock = FakeClock()
    name = unique()
    reconcile = Recorder(clock, {"k": [TimeoutError("upstream timed out")]})
    ctl: Controller[str] = Controller(
        name, reconcile=reconcile, workers=1, clock=clock, reconcile_timeout=60.0
    )
    ctl.start()
    ctl.enqueue("k")
    await settle()
    assert total(name, "error") == 1
    assert counter("controller_runtime_reconcile_timeouts_total", name) == 0
    await ctl.stop()


async def test_run_until_the_stop_event() -> None:
    clock = FakeClock()
    reconcile = Recorder(clock)
    ctl: Controller[str] = Controller(unique(), reconcile=reconcile, workers=3, clock=clock)
    stop = asyncio.Event()
    runner = asyncio.create_task(ctl.run(stop))
    await settle()
    assert ctl.running
    ctl.enqueue("a")
    ctl.enqueue_after("b", 1.0)
    await settle()
    await clock.advance(1.0)
    await settle()
    stop.set()
    await asyncio.wait_for(runner, 2)
    assert sorted(k for k, _ in reconcile.calls) == ["a", "b"]
    assert not ctl.running


async def test_cancelling_run_stops_the_workers() -> None:
    clock = FakeClock()
    ctl: Controller[str] = Controller(unique(), reconcile=Recorder(clock), workers=2, clock=clock)
    runner = asyncio.create_task(ctl.run(asyncio.Event()))
    await settle()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert not ctl.running
    assert ctl.queue.shutting_down


async def test_reconcile_time_is_measured_on_the_clock() -> None:
    clock = FakeClock()
    name = unique()
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        await release.wait()

    ctl: Controller[str] = Controller(name, reconcile=reconcile, workers=1, clock=clock)
    ctl.start()
    ctl.enqueue("k")
    await settle()
    assert counter("controller_runtime_active_workers", name) == 1
    await clock.advance(0.3)
    release.set()
    await settle()
    assert counter("controller_runtime_active_workers", name) == 0
    assert counter("controller_runtime_reconcile_time_seconds_sum", name) == pytest.approx(0.3)
    bucket = REGISTRY.get_sample_value(
        "controller_runtime_reconcile_time_seconds_bucket", {"controller": name, "le": "0.3"}
    )
    assert bucket == 1
    await ctl.stop()


async def test_a_given_queue_and_its_limiter_are_used() -> None:
    clock = FakeClock()
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(1.0, 8.0)
    queue: RateLimitingQueue[str] = RateLimitingQueue(rate_limiter=limiter, clock=clock)
    reconcile = Recorder(clock, {"k": [RuntimeError("x")] * 5})
    ctl: Controller[str] = Controller(
        unique(), reconcile=reconcile, workers=1, clock=clock, queue=queue
    )
    assert ctl.queue is queue
    ctl.start()
    ctl.enqueue("k")
    for _ in range(30):
        await settle(5)
        await clock.advance(1.0)
    assert reconcile.times("k") == pytest.approx([0.0, 1.0, 3.0, 7.0, 15.0, 23.0])
    await ctl.stop()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Controller(unique(), reconcile=Recorder(FakeClock()), workers=0)
    with pytest.raises(ValueError):
        Controller(unique(), reconcile=Recorder(FakeClock()), reconcile_timeout=0)


async def test_a_controller_starts_once() -> None:
    ctl: Controller[str] = Controller(unique(), reconcile=Recorder(FakeClock()), workers=1)
    ctl.start()
    with pytest.raises(RuntimeError):
        ctl.start()
    await ctl.stop()
