"""The scheduler's working state: pods indexed for fast "where does this fit" questions.

Placing 10,000 adapters on 1,000 pods in well under a second rules out scanning every pod for every
replica. Pods are grouped by base model, then by (zone, max-lora-rank) class; each class keeps its
Ready pods that have a free adapter slot in a list sorted by free memory, so the roomiest (or the
tightest) pod that fits is found by looking at one end of the list or by bisection.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from lora_controller.scheduler.model import (
    AdapterDemand,
    AdapterKey,
    PodCapacity,
    PodKey,
    PreemptionPolicy,
)

UNBOUNDED = 1 << 62
"""Free memory of a pod whose memory capacity is unknown: only its slots limit it."""

Entry = tuple[int, int, PodKey, "PodState"]
"""A class list entry: (free memory, free slots, pod key, pod). Keys are unique, so the pod itself is
never compared."""

FullEntry = tuple[int, PodKey, "PodState"]
"""An entry of a group's list of Ready pods without a free slot: (free memory, pod key, pod)."""

OpenEntry = tuple[int, int, PodKey, "PodState"]
"""An entry of a group's list of clean pods with a free active slot (heat.py): (heat, -free
memory, pod key, pod)."""


class PodState:
    """One pod and what is placed on it now."""

    __slots__ = (
        "active", "base_model", "capacity_total", "clean", "entry", "free_mem", "free_slots",
        "full_entry", "group", "heat", "hosted", "key", "klass", "max_rank", "node", "open_entry",
        "prio_count", "prio_max", "prio_mem", "ready", "spec", "zone",
    )

    def __init__(self, spec: PodCapacity, group: GroupState) -> None:
        self.spec = spec
        self.key = spec.key
        self.base_model = spec.base_model
        self.group = group
        self.ready = spec.ready
        self.max_rank = spec.max_lora_rank
        # A pod without a node label is its own node; pods without a zone label share one zone.
        self.node = spec.node if spec.node is not None else f"\x00pod/{spec.key}"
        self.zone = spec.zone if spec.zone is not None else ""
        if spec.memory_capacity_bytes is None:
            self.capacity_total: int | None = None
            self.free_mem = UNBOUNDED
        else:
            self.capacity_total = spec.memory_capacity_bytes - spec.reserved_memory_bytes
            self.free_mem = self.capacity_total
        self.free_slots = spec.adapter_slots - spec.reserved_slots
        self.hosted: dict[AdapterKey, AdapterState] = {}
        # Per priority: memory, count and largest memory of the replicas placed here (preemption).
        self.prio_mem: dict[int, int] = {}
        self.prio_count: dict[int, int] = {}
        self.prio_max: dict[int, int] = {}
        self.entry: Entry | None = None
        self.full_entry: FullEntry | None = None
        self.klass: PodClass | None = None
        # `--max-loras` (None: unknown), whether heat.py made this pod clean for this run, the
        # summed demand of its replicas (micro-requests per second), its entry in `group.open`.
        self.active = spec.active_slots
        self.clean = False
        self.heat = 0
        self.open_entry: OpenEntry | None = None

    @property
    def slots_total(self) -> int:
        """Adapter slots left after reserved ones."""
        return self.spec.adapter_slots - self.spec.reserved_slots

    def __repr__(self) -> str:
        return f"PodState({self.key!r}, free_mem={self.free_mem}, free_slots={self.free_slots})"


class PodClass:
    """Ready pods of one base model, zone and max-lora-rank, with a free slot, by free memory."""

    __slots__ = ("entries", "max_rank", "zone")

    def __init__(self, zone: str, max_rank: int) -> None:
        self.zone = zone
        self.max_rank = max_rank
        self.entries: list[Entry] = []


class GroupState:
    """All pods of one base model."""

    __slots__ = (
        "_by_rank", "_by_selector", "_classes_by_rank", "base_model", "capacities", "classes", "full",
        "last_gain", "levels", "mem_by_rank", "open", "pods", "prio_count", "theta", "want_memory",
        "want_replicas",
    )

    def __init__(self, base_model: str) -> None:
        self.base_model = base_model
        self.pods: dict[PodKey, PodState] = {}
        self.classes: dict[tuple[str, int], PodClass] = {}
        # Ready pods without a free slot, by free memory (where a one-move repair may make room).
        self.full: list[FullEntry] = []
        # One past the index of the run's last event that gave a pod of this group more room.
        self.last_gain = 0
        # Per adapter rank: the largest memory of an adapter of that rank (an upper bound: never
        # lowered when adapters go). Bounds which replicas a repair could move.
        self.mem_by_rank: dict[int, int] = {}
        # Per (rank, id of an eligible set): that set, and the Ready pods it admits (see usable_pods).
        self._by_selector: dict[tuple[int, int], tuple[frozenset[PodKey], list[PodState]]] = {}
        # Replicas placed on Ready pods, per priority: tells at once whether preemption can help.
        self.prio_count: dict[int, int] = {}
        self._by_rank: dict[int, list[PodState]] = {}
        self._classes_by_rank: dict[int, list[PodClass]] = {}
        # Per rank: (adapter memory capacity, key) of eligible pods, largest first (for reasons).
        self.capacities: dict[int, list[tuple[int, PodKey]]] = {}
        # The demand per replica from which an adapter is hot; None: no roles (heat.py). Clean
        # pods with a free active slot, by (heat, -free memory, key).
        self.theta: int | None = None
        self.open: list[OpenEntry] = []
        # Counted adapters' replicas wanted and their memory, and per demand per replica (> 0)
        # the replicas wanted: what heat.py sizes roles from, kept up to date by `count`.
        self.want_replicas = 0
        self.want_memory = 0
        self.levels: dict[int, int] = {}

    def add_pod(self, pod: PodState, *, live: bool) -> None:
        """Add a pod; `live` also indexes it (otherwise `build_index` does, once for all)."""
        self.pods[pod.key] = pod
        self.forget_views()
        if pod.ready:
            klass = self.classes.get((pod.zone, pod.max_rank))
            if klass is None:
                klass = self.classes[(pod.zone, pod.max_rank)] = PodClass(pod.zone, pod.max_rank)
            pod.klass = klass
            if live:
                reindex(pod)

    def remove_pod(self, pod: PodState) -> None:
        """Forget a pod (its replicas must have been detached)."""
        if pod.entry is not None and pod.klass is not None:
            _remove_entry(pod.klass.entries, pod.entry)
            pod.entry = None
        if pod.full_entry is not None:
            _remove_full(self.full, pod.full_entry)
            pod.full_entry = None
        del self.pods[pod.key]
        self.forget_views()

    def forget_selectors(self) -> None:
        """Drop the cached pod lists of eligible sets (they changed)."""
        self._by_selector.clear()

    def forget_views(self) -> None:
        """Drop the cached pod lists (after the set of pods changed, or to release eligible sets)."""
        self._by_rank.clear()
        self._by_selector.clear()
        self._classes_by_rank.clear()
        self.capacities.clear()

    def build_index(self) -> None:
        """Fill every class list from scratch."""
        for klass in self.classes.values():
            klass.entries = []
        self.full = []
        for pod in self.pods.values():
            pod.entry = None
            pod.full_entry = None
            if pod.klass is not None:
                if pod.free_slots > 0:
                    pod.entry = (pod.free_mem, pod.free_slots, pod.key, pod)
                    pod.klass.entries.append(pod.entry)
                else:
                    pod.full_entry = (pod.free_mem, pod.key, pod)
                    self.full.append(pod.full_entry)
        for klass in self.classes.values():
            klass.entries.sort()
        self.full.sort()

    def ready_pods(self, rank: int) -> list[PodState]:
        """Ready pods whose max-lora-rank admits `rank`, sorted by key."""
        pods = self._by_rank.get(rank)
        if pods is None:
            pods = sorted(
                (p for p in self.pods.values() if p.ready and p.max_rank >= rank),
                key=lambda p: p.key,
            )
            self._by_rank[rank] = pods
        return pods

    def usable_pods(self, rank: int, eligible: frozenset[PodKey] | None) -> list[PodState]:
        """Ready pods that admit `rank` and are in `eligible` (None: all), sorted by key.

        Cached per set object: the reconciler passes one set for all adapters of a CR.
        """
        pods = self.ready_pods(rank)
        if eligible is None:
            return pods
        cached = self._by_selector.get((rank, id(eligible)))
        if cached is not None and cached[0] is eligible:
            return cached[1]
        if len(eligible) < len(pods):
            by_key = self.pods
            chosen = sorted(
                (p for p in (by_key.get(k) for k in eligible) if p is not None
                 and p.ready and p.max_rank >= rank),
                key=lambda p: p.key,
            )
        else:
            chosen = [p for p in pods if p.key in eligible]
        # The set is kept alive with the list, so its id cannot be reused while cached.
        self._by_selector[(rank, id(eligible))] = (eligible, chosen)
        return chosen

    def room_by_rank(self) -> dict[int, int]:
        """Per adapter rank seen: the most free memory of a Ready pod with a free slot that admits
        the rank (-1 if none): no replica of that rank can move to a pod with more."""
        tops: dict[int, int] = {}
        for klass in self.classes.values():
            if klass.entries and klass.entries[-1][0] > tops.get(klass.max_rank, -1):
                tops[klass.max_rank] = klass.entries[-1][0]
        return {
            rank: max((top for max_rank, top in tops.items() if max_rank >= rank), default=-1)
            for rank in self.mem_by_rank
        }

    def classes_for(self, rank: int) -> list[PodClass]:
        """Classes whose max-lora-rank admits `rank`, in a fixed order."""
        classes = self._classes_by_rank.get(rank)
        if classes is None:
            classes = [
                k for key, k in sorted(self.classes.items()) if k.max_rank >= rank
            ]
            self._classes_by_rank[rank] = classes
        return classes

    def has_priority_below(self, priority: int) -> bool:
        """Is any replica of lower priority placed on a Ready pod of this base model?"""
        return any(q < priority for q in self.prio_count)


class AdapterState:
    """One adapter, the pods it is on now, and its bookkeeping for this and the next run."""

    __slots__ = (
        "cert_at",
        "demand",
        "eligible",
        "evicts",
        "fill",
        "group",
        "key",
        "mem",
        "nodes",
        "pods",
        "preempted",
        "prio",
        "q",
        "qi",
        "rank",
        "repair_at",
        "wanted",
        "zones",
    )

    def __init__(self, demand: AdapterDemand, group: GroupState | None) -> None:
        self.demand = demand
        self.key = demand.key
        self.group = group
        self.mem = demand.memory_bytes
        self.rank = demand.rank or 0
        self.prio = demand.priority
        self.evicts = demand.preemption_policy is PreemptionPolicy.LOWER_PRIORITY
        self.fill = demand.replicas is None
        self.wanted = demand.replicas if demand.replicas is not None else 0
        self.eligible = demand.eligible_pods
        self.q = demand.demand_rps / max(self.wanted, 1)
        self.qi = round(self.q * 1_000_000)  # exact sums: the same in every order
        if group is not None and self.mem > group.mem_by_rank.get(self.rank, -1):
            group.mem_by_rank[self.rank] = self.mem
        self.pods: dict[PodKey, PodState] = {}
        self.nodes: dict[str, int] = {}
        self.zones: dict[str, int] = {}
        # Index into the run's event log from which a failed search must be redone; None: never
        # failed (or placed since). See run.py for why this is sound.
        self.cert_at: int | None = None
        # The same for a failed one-move repair: redone only after an event in the group.
        self.repair_at: int | None = None
        self.preempted: list[tuple[PodKey, AdapterKey, int]] = []

    @property
    def short(self) -> bool:
        """Wants more replicas than it has (an every-pod adapter is short only with no pod)."""
        if self.fill:
            return not self.pods
        return len(self.pods) < self.wanted

    def may_use(self, pod: PodState) -> bool:
        """Is `pod` in this adapter's eligible set (its podSelector)?"""
        return self.eligible is None or pod.key in self.eligible

    def __repr__(self) -> str:
        return f"AdapterState({self.key}, pods={sorted(self.pods)})"


def _remove_entry(entries: list[Entry], entry: Entry) -> None:
    i = bisect_left(entries, entry)
    del entries[i]


def _remove_full(entries: list[FullEntry], entry: FullEntry) -> None:
    i = bisect_left(entries, entry)
    del entries[i]


def count(adapter: AdapterState, sign: int) -> None:
    """Add (`sign` 1) or take out (-1) a counted adapter's wants from its group's totals."""
    group = adapter.group
    if group is None or adapter.fill:
        return
    group.want_replicas += sign * adapter.wanted
    group.want_memory += sign * adapter.wanted * adapter.mem
    if adapter.qi > 0 and adapter.wanted > 0:
        levels = group.levels
        left = levels.get(adapter.qi, 0) + sign * adapter.wanted
        if left:
            levels[adapter.qi] = left
        else:
            del levels[adapter.qi]


def reopen(pod: PodState) -> None:
    """Move a clean pod to its place in its group's `open` list (or out of it)."""
    open_ = pod.group.open
    if pod.open_entry is not None:
        del open_[bisect_left(open_, pod.open_entry)]
        pod.open_entry = None
    if pod.clean and pod.free_slots > 0 and len(pod.hosted) < (pod.active or 0):
        pod.open_entry = (pod.heat, -pod.free_mem, pod.key, pod)
        insort(open_, pod.open_entry)


def reindex(pod: PodState) -> None:
    """Move a pod to its place in its class list (or the full list) after its free room changed."""
    if pod.clean or pod.open_entry is not None:
        reopen(pod)
    klass = pod.klass
    if klass is None:
        return
    if pod.entry is not None:
        _remove_entry(klass.entries, pod.entry)
        pod.entry = None
    if pod.free_slots > 0:
        pod.entry = (pod.free_mem, pod.free_slots, pod.key, pod)
        insort(klass.entries, pod.entry)
        if pod.full_entry is not None:
            _remove_full(pod.group.full, pod.full_entry)
            pod.full_entry = None
    elif pod.full_entry is None or pod.full_entry[0] != pod.free_mem:
        full = pod.group.full
        if pod.full_entry is not None:
            _remove_full(full, pod.full_entry)
        pod.full_entry = (pod.free_mem, pod.key, pod)
        insort(full, pod.full_entry)


def attach(adapter: AdapterState, pod: PodState) -> None:
    """Record one replica of `adapter` on `pod` (the caller reindexes the pod)."""
    mem = adapter.mem
    prio = adapter.prio
    if pod.capacity_total is not None:
        pod.free_mem -= mem
    pod.free_slots -= 1
    pod.heat += adapter.qi
    pod.hosted[adapter.key] = adapter
    pod.prio_mem[prio] = pod.prio_mem.get(prio, 0) + mem
    pod.prio_count[prio] = pod.prio_count.get(prio, 0) + 1
    if mem > pod.prio_max.get(prio, -1):
        pod.prio_max[prio] = mem
    if pod.ready:
        counts = pod.group.prio_count
        counts[prio] = counts.get(prio, 0) + 1
    adapter.pods[pod.key] = pod
    adapter.nodes[pod.node] = adapter.nodes.get(pod.node, 0) + 1
    adapter.zones[pod.zone] = adapter.zones.get(pod.zone, 0) + 1


def detach(adapter: AdapterState, pod: PodState) -> None:
    """Remove one replica of `adapter` from `pod` (the caller reindexes the pod)."""
    mem = adapter.mem
    prio = adapter.prio
    if pod.capacity_total is not None:
        pod.free_mem += mem
    pod.free_slots += 1
    pod.heat -= adapter.qi
    del pod.hosted[adapter.key]
    count = pod.prio_count[prio] - 1
    if count:
        pod.prio_count[prio] = count
        pod.prio_mem[prio] -= mem
        if mem == pod.prio_max[prio]:
            pod.prio_max[prio] = max(a.mem for a in pod.hosted.values() if a.prio == prio)
    else:
        del pod.prio_count[prio]
        del pod.prio_mem[prio]
        del pod.prio_max[prio]
    if pod.ready:
        counts = pod.group.prio_count
        left = counts[prio] - 1
        if left:
            counts[prio] = left
        else:
            del counts[prio]
    del adapter.pods[pod.key]
    for counter, label in ((adapter.nodes, pod.node), (adapter.zones, pod.zone)):
        left = counter[label] - 1
        if left:
            counter[label] = left
        else:
            del counter[label]
