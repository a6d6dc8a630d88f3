"""Request traces for bench/usage.py: how many requests each adapter gets in each tick.

The four `dynamo-*` traces follow NVIDIA Dynamo's LoRA allocator simulation (crate dynamo-llm,
lib/llm/tests/lora_simulation): 100 adapters with Zipf(s = 1.0) popularity in a fixed ranking,
200 ticks of 3 s, and per adapter and tick a Poisson(lambda(t) * w_k) count, w_k = k^-s / H(n, s).
The draws are made in Dynamo's order (adapter by adapter, tick by tick, after the Markov chain of
the mmpp trace) with Knuth's Poisson algorithm, from Python's generator seeded 42: the same
distributions, not the same numbers (Dynamo draws from Rust's StdRng).

`drift` (popularity that changes rank, bursts) and `large` are ours.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

TICK_SECONDS = 3.0


@dataclass
class Trace:
    """Per tick, per adapter (index = popularity rank at the start), a request count."""

    name: str
    adapters: int
    ticks: int
    counts: list[list[int]]  # counts[tick][adapter]
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(sum(row) for row in self.counts)


def zipf_weights(n: int, s: float) -> list[float]:
    """w_k = k^-s / H(n, s), k = 1..n."""
    raw = [1.0 / (k ** s) for k in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def poisson(rng: random.Random, lam: float) -> int:
    """Knuth's algorithm below 30, a normal approximation above (as Dynamo's harness)."""
    if lam <= 0:
        return 0
    if lam > 30:
        u1 = max(rng.random(), 5e-324)
        u2 = rng.random()
        normal = math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)
        return max(0, round(lam + math.sqrt(lam) * normal))
    limit = math.exp(-lam)
    k = 0
    p = 1.0
    while True:
        k += 1
        p *= rng.random()
        if p < limit:
            return k - 1


def _draw(name: str, n: int, ticks: int, rates: Sequence[float], seed: int,
          rng: random.Random | None = None) -> Trace:
    rng = rng or random.Random(seed)
    weights = zipf_weights(n, 1.0)
    counts = [[0] * n for _ in range(ticks)]
    for k, w in enumerate(weights):
        for t in range(ticks):
            counts[t][k] = poisson(rng, rates[t] * w)
    return Trace(name, n, ticks, counts)


def dynamo_hot(seed: int = 42, ticks: int = 200, n: int = 100) -> Trace:
    return _draw("dynamo-hot", n, ticks, [40.0] * ticks, seed)


def dynamo_daily(seed: int = 42, ticks: int = 200, n: int = 100) -> Trace:
    rates = [30.0 - 20.0 * math.cos(2 * math.pi * (t % 100) / 100) for t in range(ticks)]
    return _draw("dynamo-daily", n, ticks, rates, seed)


def dynamo_spike(seed: int = 42, ticks: int = 200, n: int = 100) -> Trace:
    rates = []
    for t in range(ticks):
        mult = 1.0 + sum(4.0 * 0.5 ** ((t - f) / 8.0) for f in (50, 130) if t >= f)
        rates.append(25.0 * mult)
    return _draw("dynamo-spike", n, ticks, rates, seed)


MMPP_RATES = (15.0, 40.0, 70.0)
MMPP_ROWS = ((0.90, 0.10, 0.0), (0.15, 0.80, 0.05), (0.10, 0.20, 0.70))


def dynamo_mmpp(seed: int = 42, ticks: int = 200, n: int = 100) -> Trace:
    rng = random.Random(seed)
    state, states = 0, []
    for _ in range(ticks):
        states.append(state)
        r, cumulative = rng.random(), 0.0
        for nxt, prob in enumerate(MMPP_ROWS[state]):
            cumulative += prob
            if r < cumulative:
                state = nxt
                break
    trace = _draw("dynamo-mmpp", n, ticks, [MMPP_RATES[s] for s in states], seed, rng)
    trace.notes["states"] = states
    return trace


def drifting(name: str, *, n: int, ticks: int, total_rate: float, seed: int,
             swaps_per_tick: int, bursts: int) -> Trace:
    """Zipf popularity whose ranking drifts (random swaps of nearby ranks every tick, and now and
    then a cold adapter that becomes a top one), plus bursts: an adapter whose rate jumps tenfold
    and decays with a half-life of 5 ticks."""
    rng = random.Random(seed)
    weights = zipf_weights(n, 1.0)
    rank_of = list(range(n))  # adapter -> its current popularity rank
    rng.shuffle(rank_of)
    span = range(ticks // 10, ticks - ticks // 10)
    burst_at = sorted(rng.sample(span, min(bursts, len(span))))
    burst_of: list[tuple[int, int]] = [(t, rng.randrange(n)) for t in burst_at]
    counts: list[list[int]] = []
    by_rank = sorted(range(n), key=lambda a: rank_of[a])
    for t in range(ticks):
        for _ in range(swaps_per_tick):
            r = rng.randrange(n - 1)
            r2 = min(n - 1, r + 1 + int(rng.expovariate(1 / 20)))
            a, b = by_rank[r], by_rank[r2]
            by_rank[r], by_rank[r2] = b, a
        if t % 20 == 10:  # a new trend: a cold adapter jumps into the top ten
            a = by_rank.pop(rng.randrange(n // 2, n))
            by_rank.insert(rng.randrange(10), a)
        extra = [0.0] * n
        for start, a in burst_of:
            if t >= start:
                extra[a] += 9.0 * 0.5 ** ((t - start) / 5.0)
        row = [0] * n
        for r, a in enumerate(by_rank):
            row[a] = poisson(rng, total_rate * weights[r] * (1.0 + extra[a]))
        counts.append(row)
    return Trace(name, n, ticks, counts, {"bursts": burst_of})


SCENARIOS: dict[str, Callable[[], Trace]] = {
    "dynamo-hot": dynamo_hot,
    "dynamo-daily": dynamo_daily,
    "dynamo-spike": dynamo_spike,
    "dynamo-mmpp": dynamo_mmpp,
}
