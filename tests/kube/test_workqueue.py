"""The work queue: client-go's queue_test.go, delaying_queue_test.go and
rate_limiting_queue_test.go ported to asyncio and a fake clock, the workqueue metrics, and a
hypothesis test of the two promises the controller rests on (no key held twice, no key lost)."""

from __future__ import annotations

import asyncio
import gc
import random
import uuid
import weakref
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from lora_controller.core.clock import FakeClock
from lora_controller.kube.ratelimit import ItemExponentialFailureRateLimiter
from lora_controller.kube.workqueue import (
    DelayingQueue,
    QueueShutDown,
    RateLimitingQueue,
    WorkQueue,
)

MS = 0.001
K = TypeVar("K", bound=Hashable)


async def settle(rounds: int = 20) -> None:
    """Let every ready task run (no time passes on a fake clock)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def get_now(queue: WorkQueue[K]) -> K:
    """`get`, failing the test instead of hanging if nothing comes."""
    return await asyncio.wait_for(queue.get(), timeout=2.0)


def unique(prefix: str = "wq") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- queue_test.go ---------------------------------------------------------------------------


@pytest.mark.parametrize("drain", [False, True], ids=["shut_down", "shut_down_with_drain"])
async def test_basic(drain: bool) -> None:
    queue: WorkQueue[object] = WorkQueue()
    held: set[object] = set()
    processed: list[object] = []

    async def producer(i: int) -> None:
        for _ in range(50):
            queue.add(i)
            await asyncio.sleep(0)

    async def consumer() -> None:
        while True:
            try:
                item = await queue.get()
            except QueueShutDown:
                return
            assert item != "added after shutdown!"
            assert item not in held, "an item was handed to two consumers"
            held.add(item)
            for _ in range(3):
                await asyncio.sleep(0)
            held.discard(item)
            processed.append(item)
            queue.done(item)

    consumers = [asyncio.create_task(consumer()) for _ in range(10)]
    await asyncio.gather(*(producer(i) for i in range(50)))
    if drain:
        await asyncio.wait_for(queue.shut_down_with_drain(), timeout=5)
    else:
        queue.shut_down()
    queue.add("added after shutdown!")
    await asyncio.wait_for(asyncio.gather(*consumers), timeout=5)
    assert len(queue) == 0
    assert set(processed) == set(range(50))


@pytest.mark.parametrize("drain", [False, True], ids=["shut_down", "shut_down_with_drain"])
async def test_add_while_processing(drain: bool) -> None:
    queue: WorkQueue[int] = WorkQueue()
    for i in range(50):
        queue.add(i)
    seen: Counter[int] = Counter()

    async def consumer() -> None:
        # Every consumer re-adds every item it gets, up to twice: the dirty-while-processing case.
        counters: Counter[int] = Counter()
        while True:
            try:
                item = await queue.get()
            except QueueShutDown:
                return
            seen[item] += 1
            counters[item] += 1
            if counters[item] < 2:
                queue.add(item)
            await asyncio.sleep(0)
            queue.done(item)

    consumers = [asyncio.create_task(consumer()) for _ in range(10)]
    await settle(200)
    if drain:
        await asyncio.wait_for(queue.shut_down_with_drain(), timeout=5)
    else:
        queue.shut_down()
    await asyncio.wait_for(asyncio.gather(*consumers), timeout=5)
    assert len(queue) == 0
    assert all(seen[i] >= 2 for i in range(50))  # each re-add got its own processing


def test_len() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    assert queue.len() == 1
    queue.add("bar")
    assert queue.len() == 2
    queue.add("foo")  # should not increase the queue length
    assert queue.len() == 2
    assert len(queue) == 2


async def test_reinsert() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    item = await get_now(queue)
    assert item == "foo"
    queue.add(item)  # add it back while processing
    assert queue.len() == 0  # ... it waits for done, not in the queue
    queue.done(item)
    assert await get_now(queue) == "foo"  # it is back on the queue
    queue.done("foo")
    assert queue.len() == 0


async def test_collapse() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("bar")
    queue.add("bar")
    assert await get_now(queue) == "bar"
    queue.done("bar")
    assert queue.len() == 0
    queue.shut_down()
    with pytest.raises(QueueShutDown):
        await get_now(queue)


async def test_collapse_while_processing() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    assert await get_now(queue) == "foo"
    queue.add("foo")
    queue.add("foo")

    async def other_worker() -> None:
        item = await queue.get()
        assert item == "foo"
        queue.done(item)

    worker = asyncio.create_task(other_worker())
    await settle()
    assert not worker.done(), "the other worker must wait until the first is done"
    queue.done("foo")
    await asyncio.wait_for(worker, timeout=2)
    assert queue.len() == 0
    assert not queue.processing


async def test_queue_drainage_using_shut_down_with_drain() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    queue.add("bar")
    first = await get_now(queue)
    second = await get_now(queue)

    drained = asyncio.create_task(queue.shut_down_with_drain())
    await settle()
    with pytest.raises(QueueShutDown):
        await get_now(queue)
    assert not drained.done(), "drain must wait for the items being processed"
    queue.done(first)
    await settle()
    assert not drained.done()
    queue.done(second)
    await asyncio.wait_for(drained, timeout=2)


async def test_no_queue_drainage_using_shut_down() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    queue.add("bar")
    await get_now(queue)
    await get_now(queue)
    queue.shut_down()  # returns at once although nothing was marked done
    assert queue.shutting_down
    assert queue.processing == {"foo", "bar"}


async def test_force_queue_shutdown_using_shut_down() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    queue.add("bar")
    await get_now(queue)
    await get_now(queue)
    drained = asyncio.create_task(queue.shut_down_with_drain())
    await settle()
    with pytest.raises(QueueShutDown):
        await get_now(queue)
    assert not drained.done()
    queue.shut_down()  # e.g. a second SIGTERM: stop waiting for the drain
    await asyncio.wait_for(drained, timeout=2)


async def test_queue_drainage_using_shut_down_with_drain_with_dirty_item() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    gotten = await get_now(queue)
    queue.add("foo")

    drained = asyncio.create_task(queue.shut_down_with_drain())
    await settle()
    with pytest.raises(QueueShutDown):
        await get_now(queue)

    queue.done(gotten)  # the dirty copy goes back into the queue, shutdown or not
    again = await get_now(queue)
    assert again == "foo"
    queue.done(again)
    with pytest.raises(QueueShutDown):
        await get_now(queue)
    await asyncio.wait_for(drained, timeout=2)


async def test_shut_down_with_drain_returns_at_once_when_nothing_is_processing() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    await asyncio.wait_for(queue.shut_down_with_drain(), timeout=2)
    # What was queued is still handed out, then the shutdown is reported.
    assert await get_now(queue) == "foo"
    queue.done("foo")
    with pytest.raises(QueueShutDown):
        await get_now(queue)


async def test_blocked_getters_are_released_by_shutdown() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(5)]
    await settle()
    queue.shut_down()
    results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), 2)
    assert all(isinstance(r, QueueShutDown) for r in results)


async def test_a_cancelled_getter_does_not_swallow_a_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await settle()
    queue.add("foo")  # wakes `first`...
    first.cancel()  # ... which is cancelled before it runs: `second` must get the key
    assert await asyncio.wait_for(second, timeout=2) == "foo"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_fifo_order() -> None:
    queue: WorkQueue[int] = WorkQueue()
    for i in range(100):
        queue.add(i)
    assert [await get_now(queue) for _ in range(100)] == list(range(100))


async def test_done_of_a_key_not_being_processed_changes_nothing() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("foo")
    queue.done("foo")  # not handed out yet: must not queue a second copy
    assert queue.len() == 1
    assert await get_now(queue) == "foo"
    queue.done("foo")
    queue.done("foo")
    assert queue.len() == 0


@dataclass(eq=False)
class BigObject:
    data: bytes


async def test_garbage_collection() -> None:
    queue: WorkQueue[BigObject] = WorkQueue(name=unique())
    item = BigObject(b"hello")
    ref = weakref.ref(item)
    queue.add(item)
    got = await queue.get()
    queue.done(got)
    del item, got
    gc.collect()
    assert ref() is None, "the queue (or its metrics) kept a finished item alive"


# -- delaying_queue_test.go ------------------------------------------------------------------


async def test_simple_queue() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("foo", 50 * MS)
    await settle()
    assert queue.len() == 0

    await clock.advance(60 * MS)
    await settle()
    assert queue.len() == 1
    item = await get_now(queue)
    queue.done(item)

    await clock.advance(10.0)  # past the next heartbeat: nothing more comes
    await settle()
    assert queue.len() == 0
    assert queue.waiting == 0


async def test_deduping() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("foo", 50 * MS)
    queue.add_after("foo", 70 * MS)
    await settle()
    assert queue.len() == 0

    await clock.advance(60 * MS)  # past the first time: it comes now
    await settle()
    assert queue.len() == 1
    queue.done(await get_now(queue))

    await clock.advance(20 * MS)  # past the second time: it was merged into the first
    await settle()
    assert queue.len() == 0

    # Again, but this time the later call has the earlier time, which wins.
    queue.add_after("foo", 50 * MS)
    queue.add_after("foo", 30 * MS)
    await settle()
    assert queue.len() == 0
    await clock.advance(40 * MS)
    await settle()
    assert queue.len() == 1
    queue.done(await get_now(queue))

    await clock.advance(20 * MS)
    await settle()
    assert queue.len() == 0


async def test_add_two_fire_early() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("foo", 1.0)
    queue.add_after("bar", 50 * MS)
    await settle()
    assert queue.len() == 0

    await clock.advance(60 * MS)
    await settle()
    assert queue.len() == 1
    assert await get_now(queue) == "bar"

    queue.add_after("baz", 2.0)
    await clock.advance(1.0)
    await settle()
    assert queue.len() == 1
    assert await get_now(queue) == "foo"

    await clock.advance(2.0)
    await settle()
    assert queue.len() == 1
    assert await get_now(queue) == "baz"


async def test_copy_shifting() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("foo", 1.0)
    queue.add_after("bar", 500 * MS)
    queue.add_after("baz", 250 * MS)
    await settle()
    assert queue.len() == 0

    await clock.advance(2.0)
    await settle()
    assert queue.len() == 3
    assert [await get_now(queue) for _ in range(3)] == ["baz", "bar", "foo"]


async def test_a_superseded_later_time_does_not_add_the_key_again() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("bar", 50 * MS)
    queue.add_after("foo", 50 * MS)
    queue.add_after("foo", 30 * MS)  # replaces foo's 50 ms, which now sits under bar's 50 ms
    await clock.advance(35 * MS)
    await settle()
    assert await get_now(queue) == "foo"
    queue.done("foo")
    await clock.advance(30 * MS)  # bar and the superseded foo entry both come due
    await settle()
    assert queue.len() == 1
    assert await get_now(queue) == "bar"
    assert queue.waiting == 0


async def test_add_after_releases_on_time_not_early() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("a", 1.0)
    await settle()
    await clock.advance(0.999)
    await settle()
    assert queue.len() == 0
    assert queue.ready_at("a") == pytest.approx(clock.monotonic() + 0.001)
    await clock.advance(0.001)
    await settle()
    assert queue.len() == 1


async def test_add_after_with_no_delay_adds_at_once() -> None:
    queue: DelayingQueue[str] = DelayingQueue(clock=FakeClock())
    queue.add_after("now", 0)
    queue.add_after("past", -5)
    assert queue.len() == 2
    assert queue.waiting == 0


async def test_add_after_an_infinite_delay_never_adds() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("never", float("inf"))
    await clock.advance(1e9)
    await settle()
    assert queue.len() == 0
    with pytest.raises(ValueError):
        queue.add_after("nan", float("nan"))


async def test_add_after_is_ignored_after_shutdown_and_pending_ones_are_dropped() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("pending", 1.0)
    queue.shut_down()
    queue.add_after("late", 0.5)
    queue.add_after("late-now", 0)
    await clock.advance(2.0)
    await settle()
    assert queue.len() == 0
    assert queue.waiting == 0
    with pytest.raises(QueueShutDown):
        await get_now(queue)


async def test_a_blocked_getter_receives_a_delayed_key() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    getter = asyncio.create_task(queue.get())
    queue.add_after("foo", 5.0)
    await settle()
    assert not getter.done()
    await clock.advance(5.0)
    assert await asyncio.wait_for(getter, timeout=2) == "foo"


async def test_many_delays_come_out_in_time_order() -> None:
    clock = FakeClock()
    queue: DelayingQueue[int] = DelayingQueue(clock=clock)
    rng = random.Random(7)
    delays = {i: rng.uniform(0.001, 100.0) for i in range(300)}
    for key, delay in delays.items():
        queue.add_after(key, delay)
    await settle()
    released: list[int] = []
    for _ in range(200):
        await clock.advance(0.5)
        await settle(5)
        while queue.len():
            released.append(await queue.get())
    assert sorted(released) == sorted(delays)
    assert released == sorted(delays, key=lambda k: delays[k])


async def test_real_clock_add_after() -> None:
    queue: DelayingQueue[str] = DelayingQueue()
    queue.add_after("soon", 0.02)
    queue.add_after("sooner", 0.01)
    assert await asyncio.wait_for(queue.get(), timeout=2) == "sooner"
    assert await asyncio.wait_for(queue.get(), timeout=2) == "soon"


# -- rate_limiting_queue_test.go -------------------------------------------------------------


async def test_rate_limiting_queue() -> None:
    clock = FakeClock()
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(MS, 1.0)
    queue: RateLimitingQueue[str] = RateLimitingQueue(rate_limiter=limiter, clock=clock)
    now = clock.monotonic()

    queue.add_rate_limited("one")
    assert queue.ready_at("one") == pytest.approx(now + 1 * MS)
    assert limiter.when("probe") == 1 * MS  # another key is unaffected
    queue.add_rate_limited("one")  # would wait 2 ms: the pending, earlier 1 ms wins
    assert queue.ready_at("one") == pytest.approx(now + 1 * MS)
    assert queue.num_requeues("one") == 2

    queue.add_rate_limited("two")
    assert queue.ready_at("two") == pytest.approx(now + 1 * MS)
    await clock.advance(1 * MS)
    await settle()
    assert sorted([await get_now(queue), await get_now(queue)]) == ["one", "two"]
    queue.add_rate_limited("two")
    assert queue.ready_at("two") == pytest.approx(clock.monotonic() + 2 * MS)

    queue.forget("one")
    assert queue.num_requeues("one") == 0
    queue.add_rate_limited("one")
    assert queue.ready_at("one") == pytest.approx(clock.monotonic() + 1 * MS)


async def test_rate_limiting_queue_defaults_to_the_controller_limiter() -> None:
    clock = FakeClock()
    queue: RateLimitingQueue[str] = RateLimitingQueue(clock=clock)
    for _ in range(3):
        queue.forget("k")
        queue.add_rate_limited("k")
    assert queue.ready_at("k") == pytest.approx(clock.monotonic() + 0.005)
    queue.forget("k")
    for _ in range(4):
        queue.add_rate_limited("k2")
    assert queue.num_requeues("k2") == 4
    await clock.advance(0.005)
    await settle()
    assert queue.len() == 2


# -- metrics ---------------------------------------------------------------------------------


def sample(metric: str, name: str) -> float:
    value = REGISTRY.get_sample_value(metric, {"name": name})
    assert value is not None, f"{metric}{{name={name!r}}} is not exported"
    return value


async def test_metrics_follow_the_queue() -> None:
    clock = FakeClock()
    name = unique()
    queue: RateLimitingQueue[str] = RateLimitingQueue(name=name, clock=clock)
    assert sample("workqueue_depth", name) == 0

    queue.add("a")
    queue.add("a")  # deduplicated: not an add
    queue.add("b")
    assert sample("workqueue_adds_total", name) == 2
    assert sample("workqueue_depth", name) == 2

    await clock.advance(2.0)
    assert await get_now(queue) == "a"
    assert sample("workqueue_depth", name) == 1
    assert sample("workqueue_queue_duration_seconds_count", name) == 1
    assert sample("workqueue_queue_duration_seconds_sum", name) == pytest.approx(2.0)

    await clock.advance(3.0)
    assert sample("workqueue_unfinished_work_seconds", name) == pytest.approx(3.0)
    assert sample("workqueue_longest_running_processor_seconds", name) == pytest.approx(3.0)
    assert await get_now(queue) == "b"
    await clock.advance(1.0)
    assert sample("workqueue_unfinished_work_seconds", name) == pytest.approx(4.0 + 1.0)
    assert sample("workqueue_longest_running_processor_seconds", name) == pytest.approx(4.0)

    queue.done("a")
    assert sample("workqueue_work_duration_seconds_count", name) == 1
    assert sample("workqueue_work_duration_seconds_sum", name) == pytest.approx(4.0)
    queue.add("b")  # re-added while processing: counted, and in the depth
    assert sample("workqueue_depth", name) == 1
    assert queue.len() == 0
    queue.done("b")
    assert sample("workqueue_longest_running_processor_seconds", name) == 0

    queue.add_after("c", 1.0)
    queue.add_rate_limited("d")
    assert sample("workqueue_retries_total", name) == 2
    await clock.advance(1.0)
    await settle()
    assert sample("workqueue_adds_total", name) == 5
    assert sample("workqueue_depth", name) == 3
    bucket = REGISTRY.get_sample_value(
        "workqueue_queue_duration_seconds_bucket", {"name": name, "le": "1e-08"}
    )
    assert bucket == 0


async def test_unnamed_queues_export_nothing() -> None:
    before = {m.name for m in REGISTRY.collect()}
    queue: WorkQueue[str] = WorkQueue()
    queue.add("x")
    assert {m.name for m in REGISTRY.collect()} == before
    assert queue.len() == 1


async def test_a_new_queue_under_an_old_name_starts_from_zero() -> None:
    name = unique()
    old: WorkQueue[str] = WorkQueue(name=name)
    for key in "abc":
        old.add(key)
    old.shut_down()
    assert sample("workqueue_depth", name) == 3
    WorkQueue[str](name=name)
    assert sample("workqueue_depth", name) == 0


# -- properties ------------------------------------------------------------------------------

KEYS = st.sampled_from([f"k{i}" for i in range(6)])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), KEYS),
        st.tuples(st.just("add_after"), KEYS, st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0])),
        st.tuples(st.just("advance"), st.sampled_from([0.25, 1.0, 3.0])),
        st.tuples(st.just("yield"), st.integers(min_value=1, max_value=6)),
        st.tuples(st.just("shutdown"), st.booleans()),
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    ops=OPS,
    workers=st.integers(min_value=1, max_value=8),
    work=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=16),
    readd=st.lists(st.booleans(), min_size=1, max_size=16),
)
def test_no_key_is_held_twice_and_no_added_key_is_lost(
    ops: list[tuple[object, ...]], workers: int, work: list[int], readd: list[bool]
) -> None:
    # A loop of its own that is never made the thread's current loop: the suite's shared loop
    # (pytest-asyncio's) is left exactly as it was.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_interleave(ops, workers, work, readd))
    finally:
        loop.run_until_complete(_cancel_leftovers())
        loop.close()


async def _cancel_leftovers() -> None:
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


async def _interleave(
    ops: list[tuple[object, ...]], workers: int, work: list[int], readd: list[bool]
) -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock, name=unique("prop"))
    seq = 0  # a logical time over every event, to order adds before gets
    held: dict[str, int] = {}
    gets: list[tuple[str, int, float]] = []  # (key, seq, fake time)
    # (key, seq of the add, the time it is due): each must be followed by a get at or after it.
    must_process: list[tuple[str, int, Due]] = []
    pending: dict[str, Due] = {}  # the model of the delaying heap: earlier time wins
    shut = False

    def tick() -> int:
        nonlocal seq
        seq += 1
        return seq

    async def worker(index: int) -> None:
        n = 0
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            assert key not in held, f"{key} held by workers {held[key]} and {index}"
            held[key] = index
            gets.append((key, tick(), clock.monotonic()))
            steps = work[(index + n) % len(work)]
            for _ in range(steps):
                await asyncio.sleep(0)
            # A bounded number of re-adds: a worker that always re-adds never lets go.
            if n < len(readd) and readd[(index + n) % len(readd)] and not shut:
                must_process.append((key, tick(), Due(clock.monotonic())))
                queue.add(key)  # re-added while processing: must come back after done
            n += 1
            assert held.pop(key) == index
            queue.done(key)

    tasks = [asyncio.create_task(worker(i)) for i in range(workers)]
    for op in ops:
        kind = op[0]
        if kind == "add":
            key = str(op[1])
            if not shut:
                must_process.append((key, tick(), Due(clock.monotonic())))
            queue.add(key)
        elif kind == "add_after":
            key, delay = str(op[1]), float(op[2])  # type: ignore[arg-type]
            if not shut:
                now = clock.monotonic()
                due = Due(now + delay)
                if delay > 0:
                    waiting = pending.get(key)
                    if waiting is not None and waiting.at > now:  # not yet fired: merge
                        waiting.at = min(waiting.at, due.at)
                        due = waiting
                    pending[key] = due
                # Owed only if its time comes before the shutdown; checked below.
                must_process.append((key, tick(), due))
            queue.add_after(key, delay)
        elif kind == "advance":
            await clock.advance(float(op[1]))  # type: ignore[arg-type]
            await settle(10)
        elif kind == "yield":
            for _ in range(int(op[1])):  # type: ignore[call-overload]
                await asyncio.sleep(0)
        elif kind == "shutdown" and not shut:
            shut = True
            shut_at = clock.monotonic()
            must_process = [m for m in must_process if m[2].at <= shut_at]
            if op[1]:
                await asyncio.wait_for(queue.shut_down_with_drain(), timeout=5)
                assert not held, "drain returned while keys were being processed"
            else:
                queue.shut_down()
    if not shut:
        await clock.advance(10.0)  # let every delay come due
        await settle(10)
        must_process = [m for m in must_process if m[2].at <= clock.monotonic()]
        shut = True
        await queue.shut_down_with_drain()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

    assert not held
    assert queue.len() == 0
    for key, added, due in must_process:
        assert any(k == key and s > added and t >= due.at - 1e-9 for k, s, t in gets), (
            f"{key} added at event {added} (due at {due.at}) was never processed after it"
        )


@dataclass
class Due:
    """When an add is due; shared by the add_after calls that the queue merges into one."""

    at: float
