"""The request-level simulation of bench/usage.py, in virtual time, and its figures.

Each tick: the router reports the tick's request counts, the controller plans, then the requests
are served in adapter order (all requests of one adapter together, as in Dynamo's harness). A
request goes to a pod whose placement has its adapter (the least loaded this tick, then by key);
if no pod has it, it is unserved (and a miss). Each pod runs at most `active_slots` adapters
(vLLM's `--max-loras`): an LRU of that size; a request whose adapter is not in it loads it (1) and,
when the LRU is full, evicts the least recently used (1 more). Adapters taken out of a pod's
placement leave its LRU (that change is route churn, not adapter churn).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Placement = Mapping[str, tuple[str, ...]]
FIGURE_KEYS = ("route_churn", "adapter_churn", "hit_rate", "churn_free_ticks",
               "peak_route_churn", "unserved_ratio", "peak_memory_bytes")


@dataclass
class Meter:
    """Accumulates the figures over the ticks of one run."""

    route_churn: int = 0
    adapter_churn: int = 0
    requests: int = 0
    hits: int = 0
    unserved: int = 0
    churn_free_ticks: int = 0
    peak_route_churn: int = 0
    peak_memory_bytes: int = 0
    plan_seconds: list[float] = field(default_factory=list)
    _last: dict[str, frozenset[str]] = field(default_factory=dict)

    def placed(self, placement: Placement, memory: Callable[[str], int]) -> None:
        """Record this tick's placement: route churn (pods added plus removed) and memory."""
        now = {k: frozenset(v) for k, v in placement.items() if v}
        churn = sum(len(now.get(k, frozenset()) ^ self._last.get(k, frozenset()))
                    for k in now.keys() | self._last.keys())
        self._last = now
        self.route_churn += churn
        self.peak_route_churn = max(self.peak_route_churn, churn)
        if churn == 0:
            self.churn_free_ticks += 1
        self.peak_memory_bytes = max(
            self.peak_memory_bytes, sum(memory(k) * len(v) for k, v in now.items()))

    def served(self, hit: bool, churn: int) -> None:
        self.requests += 1
        self.hits += hit
        self.adapter_churn += churn

    def figures(self) -> dict[str, float | int]:
        total = max(self.requests, 1)
        return {
            "route_churn": self.route_churn,
            "adapter_churn": self.adapter_churn,
            "hit_rate": round(self.hits / total, 4),
            "churn_free_ticks": self.churn_free_ticks,
            "peak_route_churn": self.peak_route_churn,
            "unserved_ratio": round(self.unserved / total, 4),
            "peak_memory_bytes": self.peak_memory_bytes,
        }


class Pods:
    """The pods' active slots: an LRU of `active_slots` adapters per pod."""

    def __init__(self, keys: Sequence[str], active_slots: int) -> None:
        self.active_slots = active_slots
        self.lru: dict[str, OrderedDict[str, None]] = {k: OrderedDict() for k in keys}
        self.busy: dict[str, int] = dict.fromkeys(keys, 0)

    def follow(self, placement: Placement) -> None:
        """Adapters no longer placed on a pod leave its active slots."""
        on: dict[str, set[str]] = {k: set() for k in self.lru}
        for adapter, pods in placement.items():
            for p in pods:
                on[p].add(adapter)
        for p, held in self.lru.items():
            for adapter in [a for a in held if a not in on[p]]:
                del held[adapter]

    def new_tick(self) -> None:
        for p in self.busy:
            self.busy[p] = 0

    def serve(self, adapter: str, pods: tuple[str, ...], meter: Meter) -> None:
        if not pods:
            meter.unserved += 1
            meter.served(False, 0)
            return
        pod = min(pods, key=lambda p: (self.busy[p], p))
        self.busy[pod] += 1
        held = self.lru[pod]
        if adapter in held:
            held.move_to_end(adapter)
            meter.served(True, 0)
            return
        churn = 1
        if len(held) >= self.active_slots:
            held.popitem(last=False)
            churn = 2
        held[adapter] = None
        meter.served(False, churn)


Planner = Callable[[int, float, Sequence[int]], Placement]
"""(tick, now, this tick's counts) -> the placement to serve this tick with."""


def simulate(counts: Sequence[Sequence[int]], names: Sequence[str], plan: Planner,
             pods: Pods, memory: Callable[[str], int], tick_seconds: float) -> Meter:
    """Run the trace: plan, record, serve, for every tick."""
    meter = Meter()
    for tick, row in enumerate(counts):
        start = time.perf_counter()
        placement = plan(tick, tick * tick_seconds, row)
        meter.plan_seconds.append(time.perf_counter() - start)
        meter.placed(placement, memory)
        pods.follow(placement)
        pods.new_tick()
        for k, c in enumerate(row):
            where = placement.get(names[k], ())
            for _ in range(c):
                pods.serve(names[k], where, meter)
    return meter


def simulate_hrw(counts: Sequence[Sequence[int]], names: Sequence[str], workers: int, slots: int,
                 memory: Callable[[str], int]) -> Meter:
    """Dynamo's HRW allocator on the trace; `peak_memory_bytes` counts what workers hold loaded."""
    from _usage_hrw import HrwController  # bench/ is on sys.path when run as a script

    ctl = HrwController(names, workers, slots)
    meter = Meter()
    peak = 0
    for tick, row in enumerate(counts):
        ctl.observe(tick, row)
        start = time.perf_counter()
        ctl.recompute(tick)
        meter.plan_seconds.append(time.perf_counter() - start)
        meter.placed(ctl.placement(), memory)
        for k, c in enumerate(row):
            for _ in range(c):
                hit, churn = ctl.serve(names[k])
                meter.served(hit, churn)
                if not hit:
                    peak = max(peak, sum(memory(a) for held in ctl.loaded for a in held))
    meter.peak_memory_bytes = peak
    return meter
