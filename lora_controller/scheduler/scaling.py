"""Demand: request counts turned into a smoothed rate per adapter, and rates into replica counts.

Pure: no I/O and no clock; every call is given the time. Two parts:

`RateEstimator` turns reports "`count` requests in the `window` seconds up to `at`" (from routers'
`POST /v1/usage`, or lookups) into a rate in requests per second. It is an exponentially weighted
rate with time constant `tau`: each request contributes `exp(-age / tau) / tau`, so the rate is a
sum that decays by one factor over time and is updated in O(1) per report. Why this smoothing:

- irregular windows are exact: a report's requests are taken as spread evenly over its window and
  the decay is integrated over it, so ten reports of 1 s and one report of 10 s give the same rate;
- several reporters add up: each router reports its own share and contributions are summed
  (a report older than the last one is decayed to the present before it is added);
- one number per adapter, no buckets: memory is bounded by the number of adapters with recent
  demand; an entry whose rate has decayed below `floor_rps` is forgotten, and at most
  `max_entries` are kept (the smallest rates go first);
- a known lag: after a step in demand the estimate covers 63 % of the step after `tau`. A new
  adapter is not under-estimated during its first `tau` seconds: the sum is divided by the
  weight of the time observed so far (1 - exp(-age / tau)), as a bias correction.

`ReplicaPlanner` turns rates into replicas: `ceil(rate / target_rps)` within [min, max], up at once
(but only past a 10 % tolerance, so a rate hovering on a boundary does not flap) and down only to
the highest count recommended over the last `scale_down_delay` seconds (the stabilization window
of the Kubernetes HPA), one resource at most `max_changes` replica additions and removals per call.
A rate below one request per `scale_down_delay` recommends zero, so an adapter whose resource
allows `min_replicas: 0` is scaled to zero after a whole delay without requests.

`DemandSignal` turns rates into the `AdapterDemand.demand_rps` to pass to the scheduler: a value
changes only when the rate moved by a factor (2), so most demand objects stay the same from one
reconcile to the next and the scheduler's incremental path stays cheap.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from lora_controller.scheduler.model import AdapterKey

DEFAULT_TAU = 60.0
"""Seconds: the estimator's time constant (a minute of history, 20 reconciles at 3 s)."""
DEFAULT_SCALE_DOWN_DELAY = 120.0
"""Seconds a lower replica count must be recommended throughout before replicas are removed."""
DEFAULT_MAX_CHANGES = 4
"""Replica additions plus removals per reconcile for one resource (`maxChangesPerReconcile`)."""
TOLERANCE = 0.1
"""A rate within 10 % of what the current replicas carry changes nothing."""


class RateEstimator:
    """Exponentially weighted request rates per key, from windowed counts of several reporters."""

    def __init__(self, tau: float = DEFAULT_TAU, *, floor_rps: float = 1e-4,
                 max_entries: int = 100_000) -> None:
        if tau <= 0 or max_entries <= 0:
            raise ValueError("tau and max_entries must be positive")
        self.tau = tau
        self.floor_rps = floor_rps
        self.max_entries = max_entries
        # key -> [decayed sum of contributions at `at`, at, time the key was first seen]
        self._entries: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, key: Hashable, count: float, window: float, now: float) -> None:
        """`count` requests in the `window` seconds that ended at `now` (a report's time)."""
        if count < 0 or window < 0:
            raise ValueError("count and window must be >= 0")
        if count == 0 and key not in self._entries:
            return
        tau = self.tau
        # Requests spread evenly over the window, decayed to its end: count * mean(exp(-s/tau)).
        weight = 1.0 if window == 0 else tau * (1.0 - math.exp(-window / tau)) / window
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = [count * weight, now, now - window]
            if len(self._entries) > self.max_entries:
                self._shed()
            return
        total, at, first = entry
        if now >= at:
            entry[0] = total * math.exp(-(now - at) / tau) + count * weight
            entry[1] = now
        else:  # a late report: decay it to the entry's time instead
            entry[0] = total + count * weight * math.exp(-(at - now) / tau)
        entry[2] = min(first, now - window)

    def rate(self, key: Hashable, now: float) -> float:
        """Requests per second at `now` (0 for a key never seen or forgotten)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        total, at, first = entry
        decayed = total * math.exp(-max(0.0, now - at) / self.tau)
        observed = max(now, at) - first
        coverage = 1.0 - math.exp(-observed / self.tau) if observed > 0 else 1.0
        return decayed / (self.tau * max(coverage, 1e-9))

    def rates(self, now: float) -> dict[Hashable, float]:
        """Every remembered key's rate at `now`; keys decayed below `floor_rps` are forgotten."""
        out: dict[Hashable, float] = {}
        for key in list(self._entries):
            value = self.rate(key, now)
            if value < self.floor_rps:
                del self._entries[key]
            else:
                out[key] = value
        return out

    def forget(self, key: Hashable) -> None:
        """Drop a key (its adapter is gone)."""
        self._entries.pop(key, None)

    def _shed(self) -> None:
        """Over `max_entries`: drop the smallest rates (compared at a common time: the log of a
        sum plus its time over tau orders entries the same at any later time)."""
        excess = len(self._entries) - self.max_entries
        order = sorted(
            self._entries,
            key=lambda k: (math.log(self._entries[k][0]) + self._entries[k][1] / self.tau
                           if self._entries[k][0] > 0 else -math.inf),
        )
        for key in order[:excess]:
            del self._entries[key]


@dataclass(frozen=True, slots=True)
class Scaling:
    """`deploymentConfig.scaling` of one resource in `Demand` mode."""

    min_replicas: int = 1
    max_replicas: int = 4
    target_rps: float = 5.0
    max_changes: int = DEFAULT_MAX_CHANGES

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                             f"got {self.min_replicas}..{self.max_replicas}")
        if not self.target_rps > 0:
            raise ValueError(f"target_rps must be > 0, got {self.target_rps}")
        if self.max_changes < 1:
            raise ValueError(f"max_changes must be >= 1, got {self.max_changes}")

    def recommend(self, rate: float, current: int, idle_rps: float) -> int:
        """Replicas for `rate`, within [min, max]; `current` stays within the tolerance."""
        if rate < idle_rps:
            wanted = 0
        elif current > 0 and abs(rate / (current * self.target_rps) - 1.0) <= TOLERANCE:
            wanted = current
        else:
            wanted = math.ceil(rate / self.target_rps - 1e-9)
        return max(self.min_replicas, min(self.max_replicas, wanted))


class ReplicaPlanner:
    """Replica counts from rates: up fast, down slowly, a bounded number of changes per resource.

    Deterministic; its only state is each adapter's recent recommendations (the stabilization
    window), forgotten for adapters no longer given.
    """

    def __init__(self, scale_down_delay: float = DEFAULT_SCALE_DOWN_DELAY) -> None:
        if scale_down_delay <= 0:
            raise ValueError("scale_down_delay must be positive")
        self.scale_down_delay = scale_down_delay
        # key -> (time first planned, recent (time, recommendation), newest last)
        self._history: dict[AdapterKey, tuple[float, deque[tuple[float, int]]]] = {}

    def plan(
        self,
        rates: Mapping[AdapterKey, float],
        scaling: Mapping[AdapterKey, Scaling],
        current: Mapping[AdapterKey, int],
        now: float,
    ) -> dict[AdapterKey, int]:
        """Replicas for every key of `scaling`, given the rates and the replicas held now."""
        for key in [k for k in self._history if k not in scaling]:
            del self._history[key]
        wanted: dict[AdapterKey, tuple[int, int]] = {}  # key -> (floor, target)
        for key in sorted(scaling):
            sc = scaling[key]
            held = current.get(key, 0)
            floor = max(sc.min_replicas, min(sc.max_replicas, held))
            target = self._stabilized(key, sc.recommend(rates.get(key, 0.0), floor,
                                                        1.0 / self.scale_down_delay), floor, now)
            wanted[key] = (floor, target)
        return _within_budget(wanted, scaling, rates)

    def _stabilized(self, key: AdapterKey, recommended: int, floor: int, now: float) -> int:
        """Up at once; down only to the highest recommendation of the whole last delay."""
        first, recent = self._history.get(key, (now, deque()))
        recent.append((now, recommended))
        horizon = now - self.scale_down_delay
        while len(recent) > 1 and recent[1][0] <= horizon:
            recent.popleft()
        self._history[key] = (first, recent)
        if recommended >= floor:
            return recommended
        if first > horizon:
            return floor  # not a whole delay of evidence yet
        return min(floor, max(r for _, r in recent))


def _within_budget(
    wanted: Mapping[AdapterKey, tuple[int, int]],
    scaling: Mapping[AdapterKey, Scaling],
    rates: Mapping[AdapterKey, float],
) -> dict[AdapterKey, int]:
    """Apply at most `max_changes` replica changes per resource: additions first, the adapters
    with the most demand per replica first; then removals, the least demand per replica first."""
    out = {key: floor for key, (floor, _) in wanted.items()}
    by_resource: dict[tuple[str, str], list[AdapterKey]] = {}
    for key in wanted:
        by_resource.setdefault((key.namespace, key.cr), []).append(key)
    for keys in by_resource.values():
        budget = min(scaling[k].max_changes for k in keys)
        ups = sorted((k for k in keys if wanted[k][1] > wanted[k][0]),
                     key=lambda k: (-rates.get(k, 0.0) / max(wanted[k][0], 1), k))
        downs = sorted((k for k in keys if wanted[k][1] < wanted[k][0]),
                       key=lambda k: (rates.get(k, 0.0) / max(wanted[k][0], 1), k))
        for key in ups + downs:
            floor, target = wanted[key]
            step = max(-budget, min(budget, target - floor))
            out[key] = floor + step
            budget -= abs(step)
            if budget <= 0:
                break
    return out


def quantize_rps(rate: float, steps_per_doubling: int = 4) -> float:
    """`rate` rounded to a geometric grid (4 steps per doubling: within 9 %).

    Placement needs only coarse heat; passing rounded rates keeps most `AdapterDemand` objects
    unchanged from one reconcile to the next, so the scheduler's incremental path looks at the
    few whose demand really moved."""
    if rate <= 0:
        return 0.0
    step = round(math.log2(rate) * steps_per_doubling)
    return float(2.0 ** (step / steps_per_doubling))


class DemandSignal:
    """The rates to pass as `AdapterDemand.demand_rps`: each changes only when the smoothed rate
    has moved by `factor` (up or down) since it was last passed, and rates below `floor_rps` pass
    as 0 (idle). Placement needs only coarse heat; a steady value keeps most demand objects the
    same from one reconcile to the next, so the scheduler's incremental path sees only the
    adapters whose demand really moved."""

    def __init__(self, factor: float = 2.0, floor_rps: float = 1 / 60) -> None:
        if factor <= 1 or floor_rps <= 0:
            raise ValueError("factor must be > 1 and floor_rps > 0")
        self.factor = factor
        self.floor_rps = floor_rps
        self._passed: dict[Hashable, float] = {}

    def update(self, rates: Mapping[Hashable, float]) -> dict[Hashable, float]:
        """The value to pass for every key of `rates` (keys not given are forgotten)."""
        out: dict[Hashable, float] = {}
        for key, rate in rates.items():
            passed = self._passed.get(key, 0.0)
            if rate < self.floor_rps:
                value = 0.0 if rate < self.floor_rps / self.factor or passed == 0.0 else passed
            elif passed == 0.0 or not passed / self.factor < rate < passed * self.factor:
                value = quantize_rps(rate)
            else:
                value = passed
            out[key] = value
        self._passed = {k: v for k, v in out.items() if v}
        return out
