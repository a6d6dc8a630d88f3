"""Waiting for a condition that another task or process makes true, with a deadline and a reason.

Tests, benchmarks and the demo watch state that a controller process or a simulated pod changes on
its own time; they poll a cheap predicate rather than sleep a guessed while, and fail saying what
they waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "", poll: float = 0.05) -> None:
    """Return once `check()` is true; raise AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)
