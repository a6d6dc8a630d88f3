"""One run of the scheduler: its own state, and steps 2 to 4 (place, preempt, settle).

A `Run` is made for each `Scheduler.schedule` call over the index (index.py) that the call built or
brought up to date; it holds what only this run needs (the queue, the log of pods that gained room,
what changed, the evictions and moves it made) and leaves the index ready for the next run.

2. Place. Missing replicas are placed highest priority first; within a priority, an adapter's first
   replica before anyone's second (round robin), larger adapters first, then by key. A replica goes
   to the pod `find` chooses (finding.py). Adapters that want every pod come after the counted ones
   of their priority and take every eligible pod with room.
3. Preempt. A replica that fits nowhere, with policy LowerPriority, evicts strictly lower-priority
   replicas where preempting.py chooses; evicted replicas are queued again at their own priority.
   Nothing is evicted unless the replica then fits.
4. Settle. If anything was evicted, replicas with policy None get another look, since an eviction
   may have freed more than the evictor needed.

Why the result is stable: a replica of priority p that found no pod (even by evicting everything
below p) cannot find one later in the run, because after its turn only replicas below p are ever
evicted, and replicas below p never counted as obstacles. So at the end, every missing replica fails
against the final state, and a second run on the output keeps everything and places nothing.

The same argument makes runs cheap: an adapter whose search failed holds a certificate (`cert_at`,
an index into the run's log of pods that gained room), and its search is redone only if a pod it
could use gained room since: a pod added, or a replica of at least its priority gone (with
LowerPriority, a lower one leaving does not help: the failed search counted it as evictable). At
the end of a run every short adapter failed against the final state, so its certificate holds from
the start of the next run's log, and the incremental path (difference.py) logs what it changed.
"""

from __future__ import annotations

import heapq

from lora_controller.scheduler.explaining import explain, reasons_for
from lora_controller.scheduler.heat import find_demand
from lora_controller.scheduler.index import Index
from lora_controller.scheduler.model import (
    AdapterKey,
    Move,
    PodKey,
    Preemption,
    Schedule,
    Shortfall,
)
from lora_controller.scheduler.preempting import preemption_target, victims_on
from lora_controller.scheduler.state import AdapterState, PodState, attach, detach, reindex

LAST_ROUND = 1 << 30
"""Queue round of adapters that want every pod: after every counted replica of their priority."""

ADDED = 1 << 62
"""Event priority of a pod that was added: it helps every adapter."""
_ADDED_FLOOR = -(1 << 62)

HeapItem = tuple[int, int, float, int, AdapterKey, int, AdapterState]
"""(-priority, round, -demand per replica, -memory, key, sequence, adapter): the placing order
(demand is 0 without demand, heat.py); keys and sequence numbers are unique, so the adapter itself
is never compared."""


class Run:
    """The state of one run over `index`; `rebuilt` says the index was built for it."""

    __slots__ = (
        "changed", "events", "evicted", "evictors", "heap", "index", "initially_short",
        "marked_cert", "marked_preempted", "marked_repair", "moves", "preemptions", "rebalanced",
        "rebuilt", "removed", "seq", "spread",
    )

    def __init__(self, index: Index, *, spread: bool, rebuilt: bool) -> None:
        self.index = index
        self.spread = spread
        self.rebuilt = rebuilt
        # Pods that gained room (or were changed by a repair), with the priority of what left
        # (ADDED: a new pod). Certificates are indexes into this log.
        self.events: list[tuple[PodState, int]] = []
        self.heap: list[HeapItem] = []
        self.seq = 0
        # Adapters whose pods may have changed, and adapters removed, since the last answer.
        self.changed: set[AdapterKey] = set()
        self.removed: set[AdapterKey] = set()
        self.initially_short: set[AdapterKey] = set()
        self.preemptions: list[Preemption] = []
        self.moves: list[Move] = []
        self.rebalanced: list[Move] = []
        # (adapter, pod) of replicas placed by evicting others in this run: never moved away.
        self.evictors: set[tuple[AdapterKey, PodKey]] = set()
        self.evicted = False
        # Adapters whose preemptions, certificate or repair certificate this run set.
        self.marked_preempted: list[AdapterState] = []
        self.marked_cert: list[AdapterState] = []
        self.marked_repair: list[AdapterState] = []
        for group in index.groups.values():
            group.last_gain = 0

    # ----------------------------------------------------------------------------------------
    # The loop

    def place_missing(self) -> None:
        """Steps 2-4 for every short adapter and every adapter that wants every pod."""
        index = self.index
        adapters = index.adapters
        self.initially_short = initially_short = set(index.short)
        heap = self.heap
        for adapter in [adapters[k] for k in initially_short] + [
            a for k, a in index.fill.items() if k not in initially_short
        ]:
            self.seq += 1
            round_ = LAST_ROUND if adapter.fill else len(adapter.pods)
            heap.append(
                (-adapter.prio, round_, -adapter.q, -adapter.mem, adapter.key, self.seq, adapter)
            )
        heapq.heapify(heap)
        self._drain_and_settle()

    def place_again(self) -> None:
        """Steps 2-4 again after repairs moved room around (certificates keep this cheap)."""
        index = self.index
        self.evicted = False
        for key in index.short | index.fill.keys():
            self.push(index.adapters[key])
        self._drain_and_settle()

    def _drain_and_settle(self) -> None:
        self._drain()
        self._settle()
        adapters = self.index.adapters
        self.index.short = {k for k in self.index.short if adapters[k].short}

    def certify_for_next_run(self) -> None:
        """Certificates for the next run: every short adapter failed against this final state."""
        adapters = self.index.adapters
        for adapter in self.marked_cert:
            adapter.cert_at = None
        self.marked_cert = []
        for adapter in self.marked_repair:
            adapter.repair_at = None
        self.marked_repair = []
        for key in self.initially_short:
            adapters[key].cert_at = None
            adapters[key].repair_at = None
        for key in self.index.short:
            adapters[key].cert_at = 0
            adapters[key].repair_at = 0
        for adapter in self.index.fill.values():
            adapter.cert_at = 0

    def push(self, adapter: AdapterState) -> None:
        """Queue `adapter` for one more replica (or, wanting every pod, for every pod)."""
        self.seq += 1
        round_ = LAST_ROUND if adapter.fill else len(adapter.pods)
        heapq.heappush(
            self.heap,
            (-adapter.prio, round_, -adapter.q, -adapter.mem, adapter.key, self.seq, adapter),
        )

    def _drain(self) -> None:
        heap = self.heap
        while heap:
            adapter = heapq.heappop(heap)[-1]
            if adapter.fill:
                self._fill_pods(adapter)
            else:
                self._place_one(adapter)

    def _settle(self) -> None:
        """After evictions, give adapters with policy None another look: an eviction may have
        freed more than its evictor took."""
        if not self.evicted:
            return
        index = self.index
        for key in index.short | index.fill.keys():
            adapter = index.adapters[key]
            if not adapter.evicts:
                self.push(adapter)
        self._drain()

    def event(self, pod: PodState, left: int, *, gain: bool = True) -> None:
        """Record that a replica of priority `left` left `pod` (`ADDED`: the pod is new).

        `gain` is False for a repair, which leaves no more free room on the pod than before (the
        replica that arrived is at least as large as the one that left).
        """
        self.events.append((pod, left))
        if gain:
            pod.group.last_gain = len(self.events)

    # ----------------------------------------------------------------------------------------
    # Placing one adapter

    def _certify(self, adapter: AdapterState) -> None:
        if adapter.cert_at is None:
            self.marked_cert.append(adapter)
        adapter.cert_at = len(self.events)

    def _helped_pods(self, adapter: AdapterState) -> list[PodState]:
        """Pods that may take `adapter` and gained room since its last failed search."""
        start = adapter.cert_at
        assert start is not None
        events = self.events
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
        pod = find_demand(adapter, self.spread)
        if pod is None:
            target = preemption_target(adapter)
            if target is None:
                self._certify(adapter)
                return
            pod, victims = target
            self._evict(victims, pod, adapter)
        attach(adapter, pod)
        reindex(pod)
        self.changed.add(adapter.key)
        if len(adapter.pods) < adapter.wanted:
            self.push(adapter)

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
                self.changed.add(adapter.key)
                continue
            if adapter.evicts and group.has_priority_below(adapter.prio):
                victims = victims_on(pod, adapter)
                if victims is not None:
                    self._evict(victims, pod, adapter)
                    attach(adapter, pod)
                    reindex(pod)
                    self.changed.add(adapter.key)
        self._certify(adapter)

    def _evict(self, victims: list[AdapterState], pod: PodState, by: AdapterState) -> None:
        for victim in victims:
            detach(victim, pod)
            self.event(pod, victim.prio)
            self.changed.add(victim.key)
            if not victim.preempted:
                self.marked_preempted.append(victim)
            victim.preempted.append((pod.key, by.key, by.prio))
            self.evictors.add((by.key, pod.key))
            self.preemptions.append(
                Preemption(
                    victim=victim.key, pod=pod.key, by=by.key,
                    victim_priority=victim.prio, by_priority=by.prio,
                )
            )
            if victim.short:
                self.index.short.add(victim.key)
            self.push(victim)
        reindex(pod)
        self.evicted = True

    # ----------------------------------------------------------------------------------------
    # The answer

    def result(self) -> Schedule:
        """The answer of this run; it also becomes the index's last answer."""
        index = self.index
        placement = index.placement
        nonempty = index.nonempty
        for key in self.removed:
            placement.pop(key, None)
            nonempty.pop(key, None)
        # A rebuilt index has no last answer: every adapter is new to it.
        for key in index.adapters if self.rebuilt else self.changed:
            adapter = index.adapters.get(key)
            if adapter is None:
                continue
            pods = tuple(sorted(adapter.pods))
            placement[key] = pods
            if pods:
                nonempty[key] = pods
            else:
                nonempty.pop(key, None)
        return Schedule(
            placement=dict(placement), unplaced=self._unplaced(),
            # An eviction that a later repair undid (the victim is back on the pod) is none.
            preemptions=tuple(
                e for e in self.preemptions if e.pod not in index.adapters[e.victim].pods
            ),
            moves=tuple(self.moves),
            rebalanced=tuple(self.rebalanced),
        )

    def _unplaced(self) -> dict[AdapterKey, Shortfall]:
        index = self.index
        unplaced: dict[AdapterKey, Shortfall] = {}
        for key in sorted(index.short):
            adapter = index.adapters[key]
            missing = 1 if adapter.fill else adapter.wanted - len(adapter.pods)
            generic = explain(adapter, index.base_model_pods.get(adapter.demand.base_model, 0))
            unplaced[key] = Shortfall(
                adapter=key,
                wanted=None if adapter.fill else adapter.wanted,
                placed=len(adapter.pods),
                reasons=reasons_for(adapter, missing, generic),
            )
        return unplaced

    def close(self) -> None:
        """Forget this run's preemptions on the adapters (they are in its answer)."""
        for adapter in self.marked_preempted:
            adapter.preempted = []
        self.marked_preempted = []
