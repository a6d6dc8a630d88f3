"""The placement algorithm: keep what is valid, then place by priority, preempting when allowed.

One run, in order:

1. Keep. Every replica in the current placement that is still valid (pod exists, same base model,
   max-lora-rank high enough, one per pod, not more than wanted) stays where it is; if a pod is over
   its capacity, its lowest-priority replicas are dropped until it fits (index.py).
2. Place. Missing replicas are placed highest priority first; within a priority, an adapter's first
   replica before anyone's second (round robin), larger adapters first, then by key. A replica goes
   to a Ready pod that fits (memory, slot, rank, base model, not already holding it), preferring a
   zone without a replica, then a node without one, then the strategy's choice (most free memory
   for Spread, least that fits for Pack) (run.py, finding.py). Adapters that want every pod come
   after the counted ones of their priority and take every eligible pod with room.
3. Preempt. A replica that fits nowhere, with policy LowerPriority, evicts strictly lower-priority
   replicas on the pod where that takes the fewest, then the lowest-priority, victims; evicted
   replicas are queued again at their own priority. Nothing is evicted unless the replica then fits
   (preempting.py).
4. Settle. If anything was evicted, replicas with policy None get another look, since an eviction
   may have freed more than the evictor needed (run.py).
5. Repair. A replica still missing may get a pod by moving one replica not larger than it to
   another pod; then steps 2-4 run again, until a round repairs nothing (repairing.py).

Why the result is stable, and why a run needs not search again for what failed before, is argued
in run.py; why the incremental path gives the same answer as a full run, in difference.py.

The modules: `state` (pods, classes, base-model groups, adapters), `index` (what is kept between
runs, and step 1), `difference` (the incremental path), `run` (one run: its state, steps 2-4 and
the answer), `finding` (the tier scan), `preempting` (victims), `repairing` (step 5), `explaining`
(reasons), and this module, which ties them together.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from lora_controller.scheduler.difference import apply_difference, difference
from lora_controller.scheduler.heat import assign_roles, rebalance
from lora_controller.scheduler.index import Index, build
from lora_controller.scheduler.model import (
    AdapterDemand,
    AdapterKey,
    AdapterStatus,
    PodCapacity,
    PodKey,
    Schedule,
    Strategy,
)
from lora_controller.scheduler.repairing import repair_pass
from lora_controller.scheduler.run import Run

DEFAULT_REBALANCE_LIMIT = 4
"""Replicas moved between hot and cold pods per run at most (heat.py), per Scheduler call."""


class _Keyed(Protocol):
    @property
    def key(self) -> Hashable: ...


_T = TypeVar("_T", bound=_Keyed)


def _unique(items: Iterable[_T], what: str) -> dict[Any, _T]:
    """`items` by key; a key given twice is an error."""
    listed = list(items)
    out = {item.key: item for item in listed}
    if len(out) != len(listed):
        seen: set[Hashable] = set()
        for item in listed:
            if item.key in seen:
                raise ValueError(f"{what} {item.key} is given twice")
            seen.add(item.key)
    return out


class Scheduler:
    """A placement engine that remembers its last run (still pure: no I/O, no clock).

    `schedule` answers for the whole input; when the input differs from the last one only by
    removed or added pods and adapters, and `current` is the last answer's placement (less the
    replicas on removed pods or of removed adapters), it reuses its index instead of rebuilding it.
    Either way the answer is the same as a fresh `schedule(...)`.
    """

    def __init__(self, *, strategy: Strategy = Strategy.SPREAD,
                 rebalance_limit: int = DEFAULT_REBALANCE_LIMIT) -> None:
        if rebalance_limit < 0:
            raise ValueError("rebalance_limit must be >= 0")
        self._strategy = strategy
        self._spread = strategy is Strategy.SPREAD
        self._rebalance_limit = rebalance_limit
        # Whether the last run gave a group roles (heat.py): then the next one decides again.
        self._roles = False
        # The index of the last run; None before the first run and after a run that failed.
        self._index: Index | None = None
        self.incremental = False
        """Whether the last run reused the previous state (for benchmarks and tests)."""

    @property
    def strategy(self) -> Strategy:
        """The placement strategy."""
        return self._strategy

    def schedule(
        self,
        adapters: Iterable[AdapterDemand],
        pods: Iterable[PodCapacity],
        current: Mapping[AdapterKey, Sequence[PodKey]] | None = None,
    ) -> Schedule:
        """Place `adapters` on `pods`, starting from `current` (what the pods hold now)."""
        adapter_specs: dict[AdapterKey, AdapterDemand] = _unique(adapters, "adapter")
        pod_specs: dict[PodKey, PodCapacity] = _unique(pods, "pod")
        observed = {k: tuple(v) for k, v in (current or {}).items() if v}
        index, self._index = self._index, None
        run: Run | None = None
        if index is not None:
            diff = difference(index, adapter_specs, pod_specs, observed)
            if diff is not None:
                run = Run(index, spread=self._spread, rebuilt=False)
                apply_difference(run, diff)
        if run is None:
            index = build(adapter_specs, pod_specs, observed)
            run = Run(index, spread=self._spread, rebuilt=True)
        self.incremental = not run.rebuilt
        demand = self._roles or _has_demand(adapter_specs, pod_specs)
        if demand:
            assign_roles(run.index)
            self._roles = any(g.theta is not None for g in run.index.groups.values())
        _place(run, self._rebalance_limit if self._roles else 0)
        result = run.result()
        run.close()
        run.index.adapter_specs = adapter_specs
        run.index.pod_specs = pod_specs
        self._index = run.index
        return result


def _has_demand(adapters: Mapping[AdapterKey, AdapterDemand],
                pods: Mapping[PodKey, PodCapacity]) -> bool:
    return any(p.active_slots for p in pods.values()) and any(
        a.demand_rps for a in adapters.values())


def _place(run: Run, rebalance_limit: int) -> None:
    """Steps 2 to 5: place, preempt and settle; then repair and place again until nothing moves;
    then, with demand, rebalance (at most `rebalance_limit` moves) and place again."""
    run.place_missing()
    _repair(run)
    if rebalance_limit and rebalance(run, rebalance_limit):
        # The moves freed room where they left: place and repair again.
        run.place_again()
        _repair(run)
    run.certify_for_next_run()


def _repair(run: Run) -> None:
    while repair_pass(run):
        # Repairs moved room around: place what fits now (certificates keep this cheap), then
        # look for repairs again. Each round places more, priority first, so this ends.
        run.place_again()


def schedule(
    adapters: Iterable[AdapterDemand],
    pods: Iterable[PodCapacity],
    current: Mapping[AdapterKey, Sequence[PodKey]] | None = None,
    *,
    strategy: Strategy = Strategy.SPREAD,
) -> Schedule:
    """Place every adapter of one or more base models on their pods (a fresh, full run)."""
    return Scheduler(strategy=strategy).schedule(adapters, pods, current)


def schedule_adapter(
    adapter: AdapterDemand,
    available_pods: Iterable[PodCapacity],
    *,
    current: Sequence[PodKey] = (),
    strategy: Strategy = Strategy.SPREAD,
) -> AdapterStatus:
    """The proposal's `ScheduleAdapter(adapter, availablePods)`: one adapter alone on these pods."""
    result = schedule(
        [adapter], available_pods, {adapter.key: tuple(current)}, strategy=strategy
    )
    return result.get_adapter_status(adapter.key)
