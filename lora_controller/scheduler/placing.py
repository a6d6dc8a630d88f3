"""The placement algorithm: keep what is valid, then place by priority, preempting when allowed.

One run, in order:

1. Keep. Every replica in the current placement that is still valid (pod exists, same base model,
   max-lora-rank high enough, one per pod, not more than wanted) stays where it is; if a pod is over
   its capacity, its lowest-priority replicas are dropped until it fits.
2. Place. Missing replicas are placed highest priority first; within a priority, an adapter's first
   replica before anyone's second (round robin), larger adapters first, then by key. A replica goes
   to a Ready pod that fits (memory, slot, rank, base model, not already holding it), preferring a
   zone without a replica, then a node without one, then the strategy's choice (most free memory
   for Spread, least that fits for Pack). Adapters that want every pod come after the counted ones
   of their priority and take every eligible pod with room.
3. Preempt. A replica that fits nowhere, with policy LowerPriority, evicts strictly lower-priority
   replicas on the pod where that takes the fewest, then the lowest-priority, victims; evicted
   replicas are queued again at their own priority. Nothing is evicted unless the replica then fits.
4. Settle. If anything was evicted, replicas with policy None get another look, since an eviction
   may have freed more than the evictor needed.

Why the result is stable: a replica of priority p that found no pod (even by evicting everything
below p) cannot find one later in the run, because after its turn only replicas below p are ever
evicted, and replicas below p never counted as obstacles. So at the end, every missing replica fails
against the final state, and a second run on the output keeps everything and places nothing.

The same argument makes runs incremental: a `Scheduler` keeps its state between runs, and after a
small change (pods lost or added, CRs added or removed) it does not search again for replicas that
failed last time unless a pod that could take them gained room. The answer is the same as a full run
on the same input (a property test checks it).
"""

from __future__ import annotations

import heapq
import operator
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

from lora_controller.scheduler.explaining import explain, reasons_for
from lora_controller.scheduler.model import (
    AdapterDemand,
    AdapterKey,
    AdapterStatus,
    Move,
    PodCapacity,
    PodKey,
    Preemption,
    Schedule,
    Shortfall,
    Strategy,
)
from lora_controller.scheduler.state import (
    AdapterState,
    Entry,
    FullEntry,
    GroupState,
    PodClass,
    PodState,
    attach,
    detach,
    reindex,
)

_LAST_ROUND = 1 << 30
"""Heap round of adapters that want every pod: after every counted replica of their priority."""

_ADDED = 1 << 62
"""Event priority of a pod that was added: it helps every adapter."""
_ADDED_FLOOR = -(1 << 62)

_DIRECT_SCAN = 16
"""An adapter that may use at most this many pods looks at each of them instead of the index."""

HeapItem = tuple[int, int, int, AdapterKey, int, AdapterState]


def _unique_adapters(adapters: Iterable[AdapterDemand]) -> dict[AdapterKey, AdapterDemand]:
    listed = list(adapters)
    out = {demand.key: demand for demand in listed}
    if len(out) != len(listed):
        seen: set[AdapterKey] = set()
        for demand in listed:
            if demand.key in seen:
                raise ValueError(f"adapter {demand.key} is given twice")
            seen.add(demand.key)
    return out


def _unique_pods(pods: Iterable[PodCapacity]) -> dict[PodKey, PodCapacity]:
    listed = list(pods)
    out = {pod.key: pod for pod in listed}
    if len(out) != len(listed):
        seen: set[PodKey] = set()
        for pod in listed:
            if pod.key in seen:
                raise ValueError(f"pod {pod.key} is given twice")
            seen.add(pod.key)
    return out


def _scan(entries: list[Entry], mem: int, spread: bool, hosted: Mapping[PodKey, PodState],
          nodes: Mapping[str, int] | None) -> Entry | None:
    """The best entry of one class list with at least `mem` free, skipping excluded pods."""
    if spread:
        i = len(entries) - 1
        while i >= 0:
            entry = entries[i]
            if entry[0] < mem:
                return None
            if entry[2] not in hosted and (nodes is None or entry[3].node not in nodes):
                return entry
            i -= 1
        return None
    n = len(entries)
    i = bisect_left(entries, (mem,))
    while i < n:
        entry = entries[i]
        if entry[2] not in hosted and (nodes is None or entry[3].node not in nodes):
            return entry
        i += 1
    return None


def _same_demand(
    old: AdapterDemand,
    new: AdapterDemand,
    old_pods: Mapping[PodKey, PodCapacity],
    new_pods: Mapping[PodKey, PodCapacity],
    same_sets: dict[tuple[int, int], bool],
) -> bool:
    """Is `new` the same demand as `old`, but for eligible pods that were added or removed?

    The reconciler recomputes each CR's eligible set when pods come and go; such a change is part
    of the pod difference the incremental path applies, not a change of the adapter. `same_sets`
    caches the answer per pair of set objects (the reconciler passes one set per CR).
    """
    old_set, new_set = old.eligible_pods, new.eligible_pods
    if old_set is new_set:
        return old == new
    if old_set is None or new_set is None:
        return False
    if (old.key, old.base_model, old.memory_bytes, old.rank, old.priority, old.preemption_policy,
            old.replicas) != (new.key, new.base_model, new.memory_bytes, new.rank, new.priority,
                              new.preemption_policy, new.replicas):
        return False
    pair = (id(old_set), id(new_set))
    same = same_sets.get(pair)
    if same is None:
        same = same_sets[pair] = all(
            k not in old_pods or k not in new_pods for k in old_set.symmetric_difference(new_set)
        )
    return same


def _best_among(adapter: AdapterState, pods: list[PodState], spread: bool) -> PodState | None:
    """The pod `_find` would choose, by looking at each of `pods` (few, or the index gave up)."""
    mem = adapter.mem
    hosted = adapter.pods
    zones = adapter.zones
    nodes = adapter.nodes
    best: tuple[int, int, Entry] | None = None
    for pod in pods:
        entry = pod.entry
        if entry is None or entry[0] < mem or pod.key in hosted:
            continue
        tier = 2 if pod.node in nodes else 0 if pod.zone not in zones else 1
        if spread:
            score = (-tier, -pod.max_rank, entry)
            if best is None or score > best:
                best = score
        else:
            score = (tier, pod.max_rank, entry)
            if best is None or score < best:
                best = score
    return None if best is None else best[2][3]


def _scan_eligible(
    entries: list[Entry], mem: int, spread: bool, hosted: Mapping[PodKey, PodState],
    nodes: Mapping[str, int] | None, eligible: frozenset[PodKey], budget: int,
) -> tuple[Entry | None, int]:
    """`_scan` for an adapter with eligible pods; each pod it skips as not eligible costs one unit
    of `budget`, and a negative budget returned means "gave up" (scan the eligible pods instead)."""
    n = len(entries)
    if spread:
        i = n - 1
        step = -1
        end = -1
    else:
        i = bisect_left(entries, (mem,))
        step = 1
        end = n
    while i != end:
        entry = entries[i]
        if spread and entry[0] < mem:
            return None, budget
        if entry[2] not in eligible:
            budget -= 1
            if budget < 0:
                return None, budget
        elif entry[2] not in hosted and (nodes is None or entry[3].node not in nodes):
            return entry, budget
        i += step
    return None, budget


def _tier(adapter: AdapterState, pod: PodState) -> int:
    if pod.zone not in adapter.zones and pod.node not in adapter.nodes:
        return 0
    return 1 if pod.node not in adapter.nodes else 2


def _choose_victims(pod: PodState, priority: int, need_mem: int, need_slots: int) -> list[AdapterState]:
    """The fewest replicas below `priority` whose eviction frees `need_mem` and `need_slots`, and
    among those the lowest-priority (then smallest) ones. The caller checked that all of them
    together would be enough."""
    candidates = sorted(
        (a for a in pod.hosted.values() if a.prio < priority), key=lambda a: (a.prio, a.mem, a.key)
    )
    by_size = sorted((a.mem for a in candidates), reverse=True)
    count = 0
    freed = 0
    while freed < need_mem or count < need_slots:
        freed += by_size[count]
        count += 1
    chosen: list[AdapterState] = []
    chosen_mem = 0
    for index, candidate in enumerate(candidates):
        if len(chosen) == count:
            break
        left = count - len(chosen) - 1
        rest = sorted((a.mem for a in candidates[index + 1:]), reverse=True)
        if len(rest) >= left and sum(rest[:left]) >= need_mem - chosen_mem - candidate.mem:
            chosen.append(candidate)
            chosen_mem += candidate.mem
    return chosen


def _evictable(pod: PodState, priority: int) -> tuple[int, int, int]:
    """Memory, count and largest single memory of the replicas below `priority` on `pod`."""
    mem = count = 0
    single = -1
    for q, c in pod.prio_count.items():
        if q < priority:
            count += c
            mem += pod.prio_mem[q]
            largest = pod.prio_max[q]
            if largest > single:
                single = largest
    return mem, count, single


def _single_victim(pod: PodState, priority: int, need_mem: int) -> AdapterState:
    """The lowest-priority, then smallest, replica below `priority` freeing `need_mem` alone."""
    best: AdapterState | None = None
    for a in pod.hosted.values():
        if a.prio < priority and a.mem >= need_mem and (
            best is None or (a.prio, a.mem, a.key) < (best.prio, best.mem, best.key)
        ):
            best = a
    assert best is not None
    return best


class Scheduler:
    """A placement engine that remembers its last run (still pure: no I/O, no clock).

    `schedule` answers for the whole input; when the input differs from the last one only by
    removed or added pods and adapters, and `current` is the last answer's placement (less the
    replicas on removed pods or of removed adapters), it reuses its index instead of rebuilding it.
    Either way the answer is the same as a fresh `schedule(...)`.
    """

    def __init__(self, *, strategy: Strategy = Strategy.SPREAD) -> None:
        self._strategy = strategy
        self._spread = strategy is Strategy.SPREAD
        self._valid = False
        self._groups: dict[str, GroupState] = {}
        self._pods: dict[PodKey, PodState] = {}
        self._adapters: dict[AdapterKey, AdapterState] = {}
        self._adapter_specs: dict[AdapterKey, AdapterDemand] = {}
        self._pod_specs: dict[PodKey, PodCapacity] = {}
        self._placement: dict[AdapterKey, tuple[PodKey, ...]] = {}
        self._nonempty: dict[AdapterKey, tuple[PodKey, ...]] = {}
        self._short: set[AdapterKey] = set()
        self._fill: dict[AdapterKey, AdapterState] = {}
        self._base_model_pods: dict[str, int] = {}
        # Per run.
        # Pods that gained room this run, with the priority of what left (_ADDED: a new pod).
        self._events: list[tuple[PodState, int]] = []
        self._heap: list[HeapItem] = []
        self._seq = 0
        self._changed: set[AdapterKey] = set()
        self._removed: set[AdapterKey] = set()
        self._preemptions: list[Preemption] = []
        self._marked: list[AdapterState] = []
        self._evicted = False
        self._marked_cert: list[AdapterState] = []
        self._marked_repair: list[AdapterState] = []
        self._moves: list[Move] = []
        # (adapter, pod) of replicas placed by evicting others in this run: never moved away.
        self._evictors: set[tuple[AdapterKey, PodKey]] = set()
        self._rebuilt = False
        self.incremental = False
        """Whether the last run reused the previous state (for benchmarks and tests)."""

    @property
    def strategy(self) -> Strategy:
        """The placement strategy."""
        return self._strategy

    # ----------------------------------------------------------------------------------------
    # Entry point

    def schedule(
        self,
        adapters: Iterable[AdapterDemand],
        pods: Iterable[PodCapacity],
        current: Mapping[AdapterKey, Sequence[PodKey]] | None = None,
    ) -> Schedule:
        """Place `adapters` on `pods`, starting from `current` (what the pods hold now)."""
        adapter_specs = _unique_adapters(adapters)
        pod_specs = _unique_pods(pods)
        observed = {k: tuple(v) for k, v in (current or {}).items() if v}
        self._begin_run()
        incremental = self._valid and self._apply_difference(adapter_specs, pod_specs, observed)
        self._valid = False
        if not incremental:
            self._rebuild(adapter_specs, pod_specs, observed)
        self.incremental = incremental
        self._run()
        result = self._result()
        self._adapter_specs = adapter_specs
        self._pod_specs = pod_specs
        self._valid = True
        return result

    def _begin_run(self) -> None:
        for adapter in self._marked:
            adapter.preempted = []
        self._marked = []
        self._events = []
        self._heap = []
        self._changed = set()
        self._removed = set()
        self._preemptions = []
        self._moves = []
        self._evictors = set()
        self._evicted = False
        self._rebuilt = False
        for group in self._groups.values():
            group.last_gain = 0

    # ----------------------------------------------------------------------------------------
    # Building the state

    def _rebuild(
        self,
        adapter_specs: Mapping[AdapterKey, AdapterDemand],
        pod_specs: Mapping[PodKey, PodCapacity],
        observed: Mapping[AdapterKey, tuple[PodKey, ...]],
    ) -> None:
        self._rebuilt = True
        for adapter in self._marked:
            adapter.preempted = []
        self._marked_cert = []
        self._groups = {}
        self._pods = {}
        self._base_model_pods = {}
        for pod_key in sorted(pod_specs):
            spec = pod_specs[pod_key]
            group = self._groups.get(spec.base_model)
            if group is None:
                group = self._groups[spec.base_model] = GroupState(spec.base_model)
            pod = PodState(spec, group)
            group.add_pod(pod, live=False)
            self._pods[pod_key] = pod
            self._base_model_pods[spec.base_model] = self._base_model_pods.get(spec.base_model, 0) + 1
        self._adapters = {}
        self._fill = {}
        kept_on: dict[PodKey, list[AdapterState]] = {}
        for key in sorted(adapter_specs):
            demand = adapter_specs[key]
            adapter = AdapterState(demand, self._groups.get(demand.base_model))
            self._adapters[key] = adapter
            if adapter.fill:
                self._fill[key] = adapter
            self._changed.add(key)
            valid = self._valid_current(adapter, observed.get(key, ()))
            for pod in valid:
                kept_on.setdefault(pod.key, []).append(adapter)
        for pod_key in sorted(kept_on):
            pod = self._pods[pod_key]
            kept = kept_on[pod_key]
            if sum(a.mem for a in kept) > pod.free_mem or len(kept) > pod.free_slots:
                kept.sort(key=lambda a: (-a.prio, a.mem, a.key))
                free_mem, free_slots, fitting = pod.free_mem, pod.free_slots, []
                for adapter in kept:
                    if adapter.mem <= free_mem and free_slots >= 1:
                        fitting.append(adapter)
                        free_mem -= adapter.mem
                        free_slots -= 1
                kept = fitting
            for adapter in kept:
                attach(adapter, pod)
        for group in self._groups.values():
            group.build_index()
        self._short = {k for k, a in self._adapters.items() if a.short}

    def _valid_current(self, adapter: AdapterState, pods: tuple[PodKey, ...]) -> list[PodState]:
        """The pods of the current placement that may keep `adapter`, at most `wanted` of them."""
        valid: list[PodState] = []
        seen: set[PodKey] = set()
        for key in pods:
            pod = self._pods.get(key)
            if (
                pod is None or key in seen or pod.group is not adapter.group
                or pod.max_rank < adapter.rank or not adapter.may_use(pod)
            ):
                continue
            seen.add(key)
            valid.append(pod)
        if adapter.fill or len(valid) <= adapter.wanted:
            return valid
        # Fewer replicas wanted than held: keep Ready pods, spread over zones then nodes.
        chosen: list[PodState] = []
        zones: set[str] = set()
        nodes: set[str] = set()
        remaining = sorted(valid, key=lambda p: p.key)
        while len(chosen) < adapter.wanted:
            best = min(
                remaining,
                key=lambda p: (
                    not p.ready, 0 if p.zone not in zones else 1 if p.node not in nodes else 2, p.key
                ),
            )
            remaining.remove(best)
            chosen.append(best)
            zones.add(best.zone)
            nodes.add(best.node)
        return chosen

    def _apply_difference(
        self,
        adapter_specs: Mapping[AdapterKey, AdapterDemand],
        pod_specs: Mapping[PodKey, PodCapacity],
        observed: Mapping[AdapterKey, tuple[PodKey, ...]],
    ) -> bool:
        """Turn the last state into this input's if the change is small; False to rebuild."""
        old_pods = self._pod_specs
        removed_pods = [k for k in old_pods if k not in pod_specs]
        added_pods: list[PodCapacity] = []
        for pod_key, spec in pod_specs.items():
            old = old_pods.get(pod_key)
            if old is None:
                if spec.base_model not in self._groups:
                    return False
                added_pods.append(spec)
            elif old is not spec and old != spec:
                return False
        old_adapters = self._adapter_specs
        removed_adapters = old_adapters.keys() - adapter_specs.keys()
        added_adapters = adapter_specs.keys() - old_adapters.keys()
        replaced: list[AdapterDemand] = []
        if len(adapter_specs) != len(old_adapters) or not all(
            map(operator.is_, adapter_specs.values(), old_adapters.values())
        ):
            # (The same demand objects in the same order need no look: keys are demand keys.)
            same_sets: dict[tuple[int, int], bool] = {}
            for key, demand in adapter_specs.items():
                old_demand = old_adapters.get(key)
                if old_demand is None or old_demand is demand:
                    continue
                if not _same_demand(old_demand, demand, old_pods, pod_specs, same_sets):
                    return False
                replaced.append(demand)
        # The observed placement must be the last answer less what is gone.
        expected = self._nonempty
        removed_pod_set = set(removed_pods)
        touched = {a for k in removed_pods for a in self._pods[k].hosted}
        if touched or removed_adapters:
            expected = dict(expected)
            for key in touched:
                kept = tuple(p for p in expected[key] if p not in removed_pod_set)
                if kept:
                    expected[key] = kept
                else:
                    del expected[key]
            for key in removed_adapters:
                expected.pop(key, None)
        if touched:
            # The pods may still report a lost pod's replicas: a full run would ignore them too.
            observed = dict(observed)
            for key in touched:
                held = tuple(p for p in observed.get(key, ()) if p not in removed_pod_set)
                if held:
                    observed[key] = held
                else:
                    observed.pop(key, None)
        if observed != expected:
            return False
        # Apply.
        selectors_changed = False
        for demand in replaced:
            adapter = self._adapters[demand.key]
            adapter.demand = demand
            if adapter.eligible is not demand.eligible_pods:
                adapter.eligible = demand.eligible_pods
                selectors_changed = True
        if selectors_changed:
            for group in self._groups.values():
                group.forget_selectors()
        for key in sorted(removed_adapters):
            adapter = self._adapters.pop(key)
            self._fill.pop(key, None)
            self._short.discard(key)
            self._removed.add(key)
            for pod in list(adapter.pods.values()):
                detach(adapter, pod)
                reindex(pod)
                self._event(pod, adapter.prio)
        for pod_key in removed_pods:
            pod = self._pods.pop(pod_key)
            for adapter in list(pod.hosted.values()):
                detach(adapter, pod)
                self._changed.add(adapter.key)
                if adapter.short:
                    self._short.add(adapter.key)
            pod.group.remove_pod(pod)
            self._base_model_pods[pod.base_model] -= 1
        for spec in sorted(added_pods, key=lambda s: s.key):
            group = self._groups[spec.base_model]
            pod = PodState(spec, group)
            group.add_pod(pod, live=True)
            self._pods[spec.key] = pod
            self._base_model_pods[spec.base_model] += 1
            self._event(pod, _ADDED)
        for key in sorted(added_adapters):
            demand = adapter_specs[key]
            adapter = AdapterState(demand, self._groups.get(demand.base_model))
            self._adapters[key] = adapter
            if adapter.fill:
                self._fill[key] = adapter
            self._changed.add(key)
            if adapter.short:
                self._short.add(key)
        return True

    # ----------------------------------------------------------------------------------------
    # Placing

    def _push(self, adapter: AdapterState) -> None:
        self._seq += 1
        round_ = _LAST_ROUND if adapter.fill else len(adapter.pods)
        heapq.heappush(
            self._heap, (-adapter.prio, round_, -adapter.mem, adapter.key, self._seq, adapter)
        )

    def _run(self) -> None:
        adapters = self._adapters
        initially_short = set(self._short)
        heap = self._heap
        for adapter in [adapters[k] for k in initially_short] + [
            a for k, a in self._fill.items() if k not in initially_short
        ]:
            self._seq += 1
            round_ = _LAST_ROUND if adapter.fill else len(adapter.pods)
            heap.append((-adapter.prio, round_, -adapter.mem, adapter.key, self._seq, adapter))
        heapq.heapify(heap)
        self._drain()
        self._settle()
        self._short = {k for k in self._short if adapters[k].short}
        while self._repair_pass():
            # Repairs moved room around: place what fits now (certificates keep this cheap), then
            # look for repairs again. Each round places more, priority first, so this ends.
            self._evicted = False
            for key in self._short | self._fill.keys():
                self._push(adapters[key])
            self._drain()
            self._settle()
            self._short = {k for k in self._short if adapters[k].short}
        # Certificates for the next run: every short adapter failed against this final state.
        for adapter in self._marked_cert:
            adapter.cert_at = None
        self._marked_cert = []
        for adapter in self._marked_repair:
            adapter.repair_at = None
        self._marked_repair = []
        for key in initially_short:
            adapters[key].cert_at = None
            adapters[key].repair_at = None
        for key in self._short:
            adapters[key].cert_at = 0
            adapters[key].repair_at = 0
        for adapter in self._fill.values():
            adapter.cert_at = 0

    def _settle(self) -> None:
        """After evictions, give adapters with policy None another look: an eviction may have
        freed more than its evictor took."""
        if not self._evicted:
            return
        for key in self._short | self._fill.keys():
            adapter = self._adapters[key]
            if not adapter.evicts:
                self._push(adapter)
        self._drain()

    def _event(self, pod: PodState, left: int, *, gain: bool = True) -> None:
        """Record that a replica of priority `left` left `pod` (`_ADDED`: the pod is new).

        `gain` is False for a repair, which leaves no more free room on the pod than before (the
        replica that arrived is at least as large as the one that left).
        """
        self._events.append((pod, left))
        if gain:
            pod.group.last_gain = len(self._events)

    # ----------------------------------------------------------------------------------------
    # Repairing: one move to place a replica that fits nowhere

    def _repair_pass(self) -> bool:
        """Try a one-move repair for every missing replica, highest priority first."""
        adapters = self._adapters
        order = sorted(
            (adapters[k] for k in self._short),
            key=lambda a: (-a.prio, _LAST_ROUND if a.fill else len(a.pods), -a.mem, a.key),
        )
        repaired = False
        stuck: set[AdapterKey] = set()
        for adapter in order:
            while adapter.short and self._repair(adapter, stuck):
                repaired = True
                stuck = set()
        return repaired

    def _repair(self, adapter: AdapterState, stuck: set[AdapterKey]) -> bool:
        """Place one replica of `adapter` on a pod P it may use by moving one replica R from P to
        another pod Q that has room for R. `stuck` holds adapters known to fit on no other pod
        (valid until something moves)."""
        group = adapter.group
        if group is None:
            return False
        at = adapter.repair_at
        if at is not None and group.last_gain <= at and not self._swapped_near(adapter, at):
            return False  # failed against a state that only lost room since
        move = self._find_move(adapter, group, stuck)
        if move is None:
            if adapter.repair_at is None:
                self._marked_repair.append(adapter)
            adapter.repair_at = len(self._events)
            return False
        pod, mover = move
        detach(mover, pod)
        attach(adapter, pod)
        reindex(pod)
        target = self._find(mover)
        assert target is not None, "the room found for the moved replica is still there"
        attach(mover, target)
        reindex(target)
        self._event(pod, mover.prio, gain=False)
        self._changed.add(adapter.key)
        self._changed.add(mover.key)
        self._moves.append(Move(adapter=mover.key, from_pod=pod.key, to_pod=target.key,
                                by=adapter.key))
        return True

    def _swapped_near(self, adapter: AdapterState, start: int) -> bool:
        """Did a repair since event `start` change a pod `adapter` may use?

        Without room gained anywhere, only such a pod can offer a new repair: a repair leaves its
        target pod with less room and its source pod with no more, but other replicas on it.
        """
        group = adapter.group
        for pod, _ in self._events[start:]:
            if (
                pod.group is group and pod.ready and pod.max_rank >= adapter.rank
                and pod.key not in adapter.pods and adapter.may_use(pod)
            ):
                return True
        return False

    def _find_move(
        self, adapter: AdapterState, group: GroupState, stuck: set[AdapterKey]
    ) -> tuple[PodState, AdapterState] | None:
        """The pod P and the replica R on it for a one-move repair, or None.

        R is never larger than the adapter, so a repair never leaves more free memory on P than
        before (room only shrinks, as during the greedy pass). P is chosen as a placement would be
        (zone, node, lowest max-lora-rank, the strategy's choice of free memory); on P, the
        smallest R that frees enough and fits on another pod, then the lowest priority, then key.
        """
        # No replica can move to a pod with less room than it needs: per rank, the largest
        # replica that could move at all, and the largest over every rank.
        room = group.room_by_rank()
        mem = adapter.mem
        limit = min(mem, max(
            (min(top, group.mem_by_rank[rank]) for rank, top in room.items()), default=-1
        ))
        if limit < 0:
            return None
        threshold = mem - limit
        hosted = adapter.pods
        eligible = adapter.eligible
        rank = adapter.rank
        zones = adapter.zones
        nodes = adapter.nodes
        sign = -1 if self._spread else 1
        # Pods with at least `threshold` free: those with a free slot (class lists), then those
        # without (the full list). A pod qualifies if its largest replica could free enough.
        ranked: list[tuple[int, int, int, PodKey, PodState]] = []
        full: list[FullEntry] = group.full
        sources: list[list[Entry] | list[FullEntry]] = [k.entries for k in group.classes_for(rank)]
        sources.append(full)
        for entries in sources:
            for i in range(bisect_left(entries, (threshold,)), len(entries)):
                pod = entries[i][-1]
                largest = pod.prio_max
                if not largest or max(largest.values()) < mem - pod.free_mem:
                    continue
                key = pod.key
                if (
                    key in hosted or (eligible is not None and key not in eligible)
                    or pod.max_rank < rank or pod.free_slots < 0
                ):
                    continue
                tier = 2 if pod.node in nodes else 0 if pod.zone not in zones else 1
                ranked.append((tier, pod.max_rank, sign * pod.free_mem, key, pod))
        heapq.heapify(ranked)
        while ranked:
            pod = heapq.heappop(ranked)[-1]
            need = mem - pod.free_mem
            movers = sorted(
                (r for r in pod.hosted.values()
                 if need <= r.mem <= limit and r.mem <= room[r.rank] and r.key not in stuck
                 and (r.key, pod.key) not in self._evictors),
                key=lambda r: (r.mem, r.prio, r.key),
            )
            for mover in movers:
                if self._find(mover) is None:
                    stuck.add(mover.key)
                    continue
                return pod, mover
        return None

    def _drain(self) -> None:
        heap = self._heap
        while heap:
            adapter = heapq.heappop(heap)[-1]
            if adapter.fill:
                self._fill_pods(adapter)
            else:
                self._place_one(adapter)

    def _certify(self, adapter: AdapterState) -> None:
        if adapter.cert_at is None:
            self._marked_cert.append(adapter)
        adapter.cert_at = len(self._events)

    def _helped_pods(self, adapter: AdapterState) -> list[PodState]:
        """Pods that may take `adapter` and gained room since its last failed search."""
        start = adapter.cert_at
        assert start is not None
        events = self._events
        if start >= len(events):
            return []
        group = adapter.group
        if group is None:
            return []
        seen: dict[PodKey, PodState] = {}
        # With LowerPriority, a replica below the adapter's priority leaving a pod does not help:
        # the failed search already counted it as evictable.
        floor = adapter.prio if adapter.evicts else _ADDED_FLOOR
        for pod, left in events[start:]:
            if (
                left >= floor and pod.group is group and pod.ready and pod.max_rank >= adapter.rank
                and pod.key not in adapter.pods and group.pods.get(pod.key) is pod
                and adapter.may_use(pod)
            ):
                seen[pod.key] = pod
        return [seen[k] for k in sorted(seen)]

    def _place_one(self, adapter: AdapterState) -> None:
        """Place one more replica of a counted adapter, and queue it again for the next."""
        if len(adapter.pods) >= adapter.wanted or adapter.group is None:
            return
        if adapter.cert_at is not None and not self._helped_pods(adapter):
            self._certify(adapter)
            return
        pod = self._find(adapter)
        if pod is None:
            target = self._preemption_target(adapter)
            if target is None:
                self._certify(adapter)
                return
            pod, victims = target
            self._evict(victims, pod, adapter)
        attach(adapter, pod)
        reindex(pod)
        self._changed.add(adapter.key)
        if len(adapter.pods) < adapter.wanted:
            self._push(adapter)

    def _fill_pods(self, adapter: AdapterState) -> None:
        """Put an every-pod adapter on every eligible pod with room (or room by preemption)."""
        group = adapter.group
        if group is None:
            return
        if adapter.cert_at is None:
            candidates = group.usable_pods(adapter.rank, adapter.eligible)
        else:
            candidates = self._helped_pods(adapter)
        mem = adapter.mem
        hosted = adapter.pods
        for pod in candidates:
            if pod.key in hosted:
                continue
            if pod.free_slots >= 1 and pod.free_mem >= mem:
                attach(adapter, pod)
                reindex(pod)
                self._changed.add(adapter.key)
                continue
            if adapter.evicts and group.has_priority_below(adapter.prio):
                victims = self._victims_on(pod, adapter)
                if victims is not None:
                    self._evict(victims, pod, adapter)
                    attach(adapter, pod)
                    reindex(pod)
                    self._changed.add(adapter.key)
        self._certify(adapter)

    def _find(self, adapter: AdapterState) -> PodState | None:
        """The best pod that fits one more replica without evicting anything."""
        group = adapter.group
        assert group is not None
        mem = adapter.mem
        spread = self._spread
        hosted = adapter.pods
        zones = adapter.zones
        nodes = adapter.nodes
        eligible = adapter.eligible
        budget = 0
        usable: list[PodState] = []
        if eligible is not None:
            # Class lists hold every pod of the class; skip the ones the adapter may not use, but
            # never more of them than it may use: then looking at each of those is cheaper.
            usable = group.usable_pods(adapter.rank, eligible)
            if len(usable) <= _DIRECT_SCAN:
                return _best_among(adapter, usable, spread)
            budget = len(usable)
        classes: list[PodClass] = group.classes_for(adapter.rank)
        best: tuple[int, Entry] | None = None
        # Tier 0: a zone (hence a node) without a replica. Within a tier, the lowest max-lora-rank
        # that admits the adapter (high-rank pods stay free for high-rank adapters), then the
        # strategy's choice of free memory.
        for klass in classes:
            if klass.zone in zones:
                continue
            if eligible is None:
                entry = _scan(klass.entries, mem, spread, hosted, nodes)
            else:
                entry, budget = _scan_eligible(
                    klass.entries, mem, spread, hosted, nodes, eligible, budget
                )
                if budget < 0:
                    return _best_among(adapter, usable, spread)
            if entry is not None:
                score = (-klass.max_rank, entry) if spread else (klass.max_rank, entry)
                if best is None or (score > best if spread else score < best):
                    best = score
        if best is None and zones:
            # Tier 1: a node without a replica; tier 2: any pod without one.
            for node_filter in (nodes, None):
                for klass in classes:
                    if eligible is None:
                        entry = _scan(klass.entries, mem, spread, hosted, node_filter)
                    else:
                        entry, budget = _scan_eligible(
                            klass.entries, mem, spread, hosted, node_filter, eligible, budget
                        )
                        if budget < 0:
                            return _best_among(adapter, usable, spread)
                    if entry is not None:
                        score = (-klass.max_rank, entry) if spread else (klass.max_rank, entry)
                        if best is None or (score > best if spread else score < best):
                            best = score
                if best is not None:
                    break
        return None if best is None else best[1][3]

    def _victims_on(self, pod: PodState, adapter: AdapterState) -> list[AdapterState] | None:
        """The victims that make room for `adapter` on `pod`, or None if no eviction can."""
        need_mem = adapter.mem - pod.free_mem
        need_slots = 1 - pod.free_slots
        mem, count, single = _evictable(pod, adapter.prio)
        if count == 0 or count < need_slots or mem < need_mem:
            return None
        if need_slots <= 1 and single >= need_mem:
            return [_single_victim(pod, adapter.prio, need_mem)]
        return _choose_victims(pod, adapter.prio, need_mem, need_slots)

    def _preemption_target(
        self, adapter: AdapterState
    ) -> tuple[PodState, list[AdapterState]] | None:
        """Where evicting lower-priority replicas makes room with the fewest, lowest victims."""
        group = adapter.group
        if not adapter.evicts or group is None or not group.has_priority_below(adapter.prio):
            return None
        priority = adapter.prio
        best_score: tuple[int, int, int, int, PodKey] | None = None
        best: tuple[PodState, list[AdapterState]] | None = None
        single_best: tuple[int, int, PodKey] | None = None
        single_pod: PodState | None = None
        hosted = adapter.pods
        mem_needed = adapter.mem
        # Pods come in key order, so the first pod with a single victim of the lowest priority
        # there is, in a zone without a replica, cannot be beaten: stop there.
        unbeatable = min(group.prio_count)
        for pod in group.usable_pods(adapter.rank, adapter.eligible):
            if pod.key in hosted:
                continue
            need_mem = mem_needed - pod.free_mem
            need_slots = 1 - pod.free_slots
            mem = count = 0
            single = -1
            lowest = priority
            prio_max = pod.prio_max
            for q, c in pod.prio_count.items():
                if q < priority:
                    count += c
                    mem += pod.prio_mem[q]
                    largest = prio_max[q]
                    if largest > single:
                        single = largest
                    if largest >= need_mem and q < lowest:
                        lowest = q
            if count == 0 or count < need_slots or mem < need_mem:
                continue
            if need_slots <= 1 and single >= need_mem:
                score1 = (lowest, _tier(adapter, pod), pod.key)
                if single_best is None or score1 < single_best:
                    single_best, single_pod = score1, pod
                    if lowest == unbeatable and score1[1] == 0:
                        break
                continue
            if single_pod is not None:
                continue  # one victim elsewhere beats several here
            victims = _choose_victims(pod, priority, need_mem, need_slots)
            prios = [v.prio for v in victims]
            score = (len(victims), max(prios), sum(prios), _tier(adapter, pod), pod.key)
            if best_score is None or score < best_score:
                best_score, best = score, (pod, victims)
        if single_pod is not None:
            need_mem = adapter.mem - single_pod.free_mem
            return single_pod, [_single_victim(single_pod, priority, need_mem)]
        return best

    def _evict(self, victims: list[AdapterState], pod: PodState, by: AdapterState) -> None:
        for victim in victims:
            detach(victim, pod)
            self._event(pod, victim.prio)
            self._changed.add(victim.key)
            if not victim.preempted:
                self._marked.append(victim)
            victim.preempted.append((pod.key, by.key, by.prio))
            self._evictors.add((by.key, pod.key))
            self._preemptions.append(
                Preemption(
                    victim=victim.key, pod=pod.key, by=by.key,
                    victim_priority=victim.prio, by_priority=by.prio,
                )
            )
            if victim.short:
                self._short.add(victim.key)
            self._push(victim)
        reindex(pod)
        self._evicted = True

    # ----------------------------------------------------------------------------------------
    # The answer

    def _result(self) -> Schedule:
        placement = self._placement
        nonempty = self._nonempty
        if self._rebuilt:
            placement.clear()
            nonempty.clear()
        for key in self._removed:
            placement.pop(key, None)
            nonempty.pop(key, None)
        for key in self._changed:
            adapter = self._adapters.get(key)
            if adapter is None:
                continue
            pods = tuple(sorted(adapter.pods))
            placement[key] = pods
            if pods:
                nonempty[key] = pods
            else:
                nonempty.pop(key, None)
        unplaced: dict[AdapterKey, Shortfall] = {}
        for key in sorted(self._short):
            adapter = self._adapters[key]
            missing = 1 if adapter.fill else adapter.wanted - len(adapter.pods)
            generic = explain(adapter, self._base_model_pods.get(adapter.demand.base_model, 0))
            unplaced[key] = Shortfall(
                adapter=key,
                wanted=None if adapter.fill else adapter.wanted,
                placed=len(adapter.pods),
                reasons=reasons_for(adapter, missing, generic),
            )
        return Schedule(
            placement=dict(placement), unplaced=unplaced,
            # An eviction that a later repair undid (the victim is back on the pod) is none.
            preemptions=tuple(
                e for e in self._preemptions if e.pod not in self._adapters[e.victim].pods
            ),
            moves=tuple(self._moves),
        )


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
