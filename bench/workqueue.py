"""Benchmark: work-queue throughput in keys per second, the queue alone and under a controller.

Not a test: it prints figures. Scenarios, each on a fresh queue:

- `raw`: one task adds N distinct keys, then gets and marks each done (no metrics);
- `raw_metrics`: the same on a named queue, so every step updates the workqueue metrics;
- `workers`: a `Controller` with 4 workers and a no-op reconcile drains N distinct keys
  (metrics on): the figure that `keys_per_s` reports;
- `dedup`: N adds spread over 1,000 keys while 4 workers reconcile them; how many adds per
  second the queue absorbs and how few reconciles they collapse into;
- `add_after`: N keys added with random delays up to 10 minutes on a fake clock, then released
  by advancing it: heap throughput.

Prints one JSON object as its last line.

    python bench/workqueue.py [--keys 100000] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid

import structlog

from lora_controller.core.clock import FakeClock
from lora_controller.kube.runner import Controller
from lora_controller.kube.workqueue import DelayingQueue, WorkQueue


def _name(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


async def raw(keys: list[str], *, metrics: bool) -> float:
    queue: WorkQueue[str] = WorkQueue(name=_name("raw") if metrics else None)
    started = time.perf_counter()
    for key in keys:
        queue.add(key)
    for _ in range(len(keys)):
        key = await queue.get()
        queue.done(key)
    elapsed = time.perf_counter() - started
    assert len(queue) == 0
    return len(keys) / elapsed


async def workers(keys: list[str], *, count: int) -> float:
    done = 0

    async def reconcile(key: str) -> None:
        nonlocal done
        done += 1

    ctl: Controller[str] = Controller(_name("workers"), reconcile=reconcile, workers=count)
    started = time.perf_counter()
    ctl.start()
    for key in keys:
        ctl.enqueue(key)
    await ctl.stop(drain=True)
    elapsed = time.perf_counter() - started
    assert done == len(keys), (done, len(keys))
    return len(keys) / elapsed


async def dedup(adds: int, *, distinct: int, count: int) -> tuple[float, int]:
    reconciles = 0

    async def reconcile(key: str) -> None:
        nonlocal reconciles
        reconciles += 1
        await asyncio.sleep(0)  # a reconcile that yields once, as any real one does

    ctl: Controller[str] = Controller(_name("dedup"), reconcile=reconcile, workers=count)
    keys = [f"ns-{i}" for i in range(distinct)]
    rng = random.Random(1)
    stream = [keys[rng.randrange(distinct)] for _ in range(adds)]
    ctl.start()
    started = time.perf_counter()
    for i, key in enumerate(stream):
        ctl.enqueue(key)
        if i % 64 == 63:
            await asyncio.sleep(0)  # events arrive in bursts; workers run in between
    await ctl.stop(drain=True)
    elapsed = time.perf_counter() - started
    return adds / elapsed, reconciles


async def add_after(keys: list[str]) -> float:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(name=_name("delay"), clock=clock)
    rng = random.Random(2)
    started = time.perf_counter()
    for key in keys:
        queue.add_after(key, rng.uniform(0.001, 600.0))
    await clock.advance(601.0)
    for _ in range(len(keys)):
        queue.done(await queue.get())
    elapsed = time.perf_counter() - started
    assert queue.waiting == 0 and len(queue) == 0
    return len(keys) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30)  # warnings and above
    )
    keys = [f"namespace-{i // 100}/adapter-{i}" for i in range(args.keys)]

    result = {
        "keys": args.keys,
        "workers": args.workers,
        "raw_keys_per_s": round(await raw(keys, metrics=False)),
        "raw_metrics_keys_per_s": round(await raw(keys, metrics=True)),
        "keys_per_s": round(await workers(keys, count=args.workers)),
    }
    adds_per_s, reconciles = await dedup(args.keys, distinct=1000, count=args.workers)
    result["dedup_adds_per_s"] = round(adds_per_s)
    result["dedup_reconciles"] = reconciles
    result["add_after_keys_per_s"] = round(await add_after(keys))
    for label, value in result.items():
        print(f"{label:>24}: {value:,}")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
