"""Giving freed memory back to the operating system.

glibc keeps memory freed by Python in its arenas, so the resident size of a process stays at the
peak of its largest reconcile. `malloc_trim(0)` returns it; calling it costs a few milliseconds,
so it runs at most every `every` seconds. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


class MemoryTrimmer:
    def __init__(self, *, every: float = 10.0) -> None:
        self.every = every
        self._last = float("-inf")
        self._trim: Callable[[int], int] | None = None
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def maybe_trim(self, now: float) -> bool:
        """Trim if `every` seconds passed since the last trim; True when it trimmed."""
        if self._trim is None or now - self._last < self.every:
            return False
        self._last = now
        self._trim(0)
        return True
