"""The rendezvous-hashing (HRW) baseline of bench/usage.py, as NVIDIA Dynamo's allocator does it.

Written from the description of Dynamo's LoRA controller (lib/llm/src/lora: load_estimator,
controller, routing/hrw, filter) and its simulation harness, to calibrate our traces and metrics
against Dynamo's published figures; nothing of it is used by the controller.

- Demand: per adapter, the arrivals in a sliding window of 30 ticks (90 s at 3 s a tick), smoothed
  by an exponential moving average (alpha 0.5) and rounded; an adapter with a rounded load > 0 is
  active.
- Replicas: the active adapters ranked by load, the top N*K kept; ceil(share * N*K) clamped to
  [1, N], scaled down by largest remainders when the sum exceeds N*K. A scale-down waits until
  the lower count has been wanted for 3 ticks in a row.
- Placement: highest random weight, sticky (a worker the adapter is on stays while not full) and
  slot-aware (full workers skipped; their fullness is what the workers report loaded, less the
  adapter's own slot, plus what this tick already placed). Inactive adapters that a worker still
  holds get one pin (the top HRW worker); active adapters past the top N*K keep their warm workers
  or get one slot-aware pin.
- Routing (the filter): the replica set's workers that have the adapter loaded, else the whole
  replica set; a round-robin cursor per adapter picks one. A worker loads on a miss and evicts its
  least recently used adapter when it holds K.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, deque
from collections.abc import Sequence

WINDOW_TICKS = 30
EMA_ALPHA = 0.5
COOLDOWN_TICKS = 3


def score(name: str, worker: int) -> int:
    """A 64-bit rendezvous weight of (adapter, worker)."""
    digest = hashlib.blake2b(f"{name}\x00{worker}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rust_round(x: float) -> int:
    """Half away from zero, as Rust's f64::round."""
    return math.floor(x + 0.5)


class HrwController:
    """One Dynamo-style controller over `workers` workers of `slots` resident adapters each."""

    def __init__(self, names: Sequence[str], workers: int, slots: int) -> None:
        self.names = list(names)
        self.workers = list(range(workers))
        self.slots = slots
        self.ranked = {n: sorted(self.workers, key=lambda w, n=n: (-score(n, w), w))
                       for n in self.names}
        self.window: dict[str, deque[tuple[int, int]]] = {}
        self.ema: dict[str, float] = {}
        self.table: dict[str, tuple[tuple[int, ...], bool]] = {}  # name -> (replica set, active)
        self.cooldown: dict[str, int] = {}
        self.tick = 0
        self.loaded: list[OrderedDict[str, None]] = [OrderedDict() for _ in self.workers]
        self.cursor: dict[str, int] = {}

    # ------------------------------------------------------------------ demand

    def observe(self, tick: int, counts: Sequence[int]) -> None:
        for k, c in enumerate(counts):
            if c:
                self.window.setdefault(self.names[k], deque()).append((tick, c))

    def _loads(self, tick: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, arrivals in self.window.items():
            while arrivals and arrivals[0][0] <= tick - WINDOW_TICKS:
                arrivals.popleft()
            count = sum(c for _, c in arrivals)
            prev = self.ema.get(name)
            self.ema[name] = count if prev is None else EMA_ALPHA * count + (1 - EMA_ALPHA) * prev
            if rust_round(self.ema[name]) > 0:
                out[name] = rust_round(self.ema[name])
        return out

    def _replica_counts(self, active: list[tuple[str, int]]) -> dict[str, int]:
        total, n = len(self.workers) * self.slots, len(self.workers)
        ranked = sorted(active, key=lambda a: (-a[1], a[0]))[:total]
        load = sum(x for _, x in ranked)
        if not ranked or load == 0:
            return {}
        raw = [(name, min(float(n), max(1.0, math.ceil(x / load * total)))) for name, x in ranked]
        if sum(c for _, c in raw) <= total:
            return {name: int(c) for name, c in raw}
        scale = total / sum(c for _, c in raw)
        floored = [(name, max(1, math.floor(max(1.0, c * scale))), max(1.0, c * scale)) for name, c in raw]
        left = total - sum(f for _, f, _ in floored)
        out = {name: f for name, f, _ in floored}
        for name, f, _ in sorted(floored, key=lambda x: (-(x[2] - x[1]), x[0])):
            if left <= 0:
                break
            if f < n:
                out[name] += 1
                left -= 1
        return out

    def _hysteresis(self, name: str, desired: int, current: int) -> int:
        if desired >= current:
            self.cooldown.pop(name, None)
            return desired
        since = self.cooldown.get(name)
        if since is None:
            self.cooldown[name] = self.tick
            return current
        if self.tick - since < COOLDOWN_TICKS:
            return current
        self.cooldown[name] = self.tick
        return desired

    # ------------------------------------------------------------------ placement

    def _sticky(self, name: str, count: int, usage: list[int], prior: tuple[int, ...]) -> tuple[int, ...]:
        out: list[int] = []
        full = [u >= self.slots for u in usage]
        for w in self.ranked[name]:
            if len(out) < count and w in prior and not full[w]:
                out.append(w)
        for w in self.ranked[name]:
            if len(out) < count and w not in out and not full[w]:
                out.append(w)
        return tuple(out) if out else tuple(self.ranked[name][:count])

    def _pin(self, name: str, usage: list[int]) -> tuple[int, ...]:
        for w in self.ranked[name]:
            if usage[w] < self.slots:
                return (w,)
        return (self.ranked[name][0],)

    def recompute(self, tick: int) -> None:
        self.tick += 1
        loads = self._loads(tick)
        known = sorted({n for held in self.loaded for n in held} | loads.keys())
        active = [(n, loads[n]) for n in known if n in loads]
        counts = self._replica_counts(active)
        residual = [len(held) for held in self.loaded]
        for name in sorted(counts):
            prior, _ = self.table.get(name, ((), True))
            final = self._hysteresis(name, counts[name], len(prior))
            own = [w for w in self.workers if name in self.loaded[w]]
            eff = [u - (1 if w in own else 0) for w, u in enumerate(residual)]
            chosen = self._sticky(name, final, eff, prior)
            for w in chosen:
                if w not in own:
                    residual[w] += 1
            self.table[name] = (chosen, True)
        for name in known:
            if name not in loads:
                self.table[name] = ((self.ranked[name][0],), False)
                self.cooldown.pop(name, None)
        self._pin_dropped([n for n, _ in active if n not in counts])
        for name in [n for n in self.table if n not in set(known)]:
            del self.table[name]
            self.cooldown.pop(name, None)
        keep = set(known)
        for name in [n for n, a in self.window.items() if n not in keep and not a]:
            del self.window[name]
            self.ema.pop(name, None)

    def _pin_dropped(self, dropped: list[str]) -> None:
        if not dropped:
            return
        skip = set(dropped)
        projected = [0] * len(self.workers)
        for name, (workers, _) in self.table.items():
            if name not in skip:
                for w in workers:
                    projected[w] += 1
        for name in dropped:
            prior, _ = self.table.get(name, ((), True))
            warm = tuple(w for w in prior if name in self.loaded[w])
            chosen = warm or self._pin(name, projected)
            for w in chosen:
                projected[w] += 1
            self.table[name] = (chosen, True)

    def placement(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(sorted(ws)) for n, (ws, _) in self.table.items() if ws}

    # ------------------------------------------------------------------ serving

    def candidates(self, name: str) -> list[int]:
        entry = self.table.get(name)
        loaded = [w for w in self.workers if name in self.loaded[w]]
        if entry is None:
            return loaded or list(self.workers)
        workers, active = entry
        if not active:
            return [workers[0]]
        in_set = sorted(workers)
        return [w for w in in_set if w in loaded] or in_set

    def serve(self, name: str) -> tuple[bool, int]:
        """One request: (hit, loads + evictions)."""
        options = self.candidates(name)
        cursor = self.cursor.get(name, 0)
        self.cursor[name] = cursor + 1
        held = self.loaded[options[cursor % len(options)]]
        if name in held:
            held.move_to_end(name)
            return True, 0
        churn = 1
        if len(held) >= self.slots:
            held.popitem(last=False)
            churn += 1
        held[name] = None
        return False, churn
