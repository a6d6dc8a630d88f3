"""The observer reads each pod at least once per poll interval: the jitter that spreads the reads
of many pods only ever shortens the wait, so what a replica answers is never more than one interval
older than the pod (the router API's freshness promise, `observedAt`)."""

from __future__ import annotations

import random

import aiohttp

from lora_controller.reconcile.observing import Observer
from lora_controller.vllm.client import VllmClient


async def test_the_next_read_comes_within_one_interval() -> None:
    random.seed(16)
    async with aiohttp.ClientSession() as session:
        observer = Observer(VllmClient(session=session), interval=10.0, jitter=0.2)
        delays = [observer._next_delay() for _ in range(10_000)]
    assert max(delays) <= 10.0
    assert min(delays) >= 8.0 and max(delays) - min(delays) > 1.5, "still spread over 20%"
