"""The rate limit on the router's "refused a request" warning: one line per interval, and the next
line allowed counts the ones suppressed in between."""

from __future__ import annotations

from lora_controller.core.clock import FakeClock
from lora_controller.server.protocol import LogLimit


async def test_one_line_per_interval_with_the_count_suppressed() -> None:
    clock = FakeClock()
    limit = LogLimit(60.0, clock=clock)
    assert limit.allow() == 0
    assert [limit.allow() for _ in range(1000)] == [None] * 1000
    await clock.advance(59.9)
    assert limit.allow() is None
    await clock.advance(0.1)
    assert limit.allow() == 1001
    await clock.advance(3600)
    assert limit.allow() == 0
    assert limit.allow() is None
