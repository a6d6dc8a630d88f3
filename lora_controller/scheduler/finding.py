"""Where one more replica of an adapter goes without evicting anything: the tier scan.

A replica prefers, in order: a zone where its adapter has no replica (tier 0), then a node where it
has none (tier 1), then any pod without it (tier 2). Within a tier it takes the lowest
max-lora-rank that admits it (high-rank pods stay free for high-rank adapters), then the
strategy's choice: the most free memory (Spread) or the least that fits (Pack), then the key.

Each class list of the index (state.py) is sorted by (free memory, free slots, key), so the best
pod of a class is its last entry (Spread) or found by bisection (Pack): a few lookups per class,
not a look at every pod. One function scans one tier; `find` calls it for tier 0, and for tiers 1
and 2 only when the adapter already has a replica and tier 0 found nothing.

An adapter with eligible pods (a podSelector) scans the same lists and skips the pods it may not
use, but never more of them than it may use: past that budget, or when it may use at most
`_DIRECT_SCAN` pods, it looks at each of its pods instead, with the same order and so the same
choice.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Container, Mapping

from lora_controller.scheduler.model import PodKey
from lora_controller.scheduler.state import AdapterState, Entry, PodClass, PodState

_DIRECT_SCAN = 16
"""An adapter that may use at most this many pods looks at each of them instead of the index."""

_NO_ZONE: frozenset[str] = frozenset()
"""Zones skipped by tiers 1 and 2: none."""


def tier(adapter: AdapterState, pod: PodState) -> int:
    """0: `pod` is in a zone without a replica of `adapter`; 1: on a node without one; 2: neither."""
    if pod.zone not in adapter.zones and pod.node not in adapter.nodes:
        return 0
    return 1 if pod.node not in adapter.nodes else 2


def find(adapter: AdapterState, spread: bool) -> PodState | None:
    """The best pod that fits one more replica of `adapter` without evicting anything."""
    group = adapter.group
    assert group is not None
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
    classes = group.classes_for(adapter.rank)
    mem = adapter.mem
    hosted = adapter.pods
    zones = adapter.zones
    nodes = adapter.nodes
    # Tier 0: a zone (hence a node) without a replica.
    best, budget = _best_in_tier(classes, zones, nodes, mem, spread, hosted, eligible, budget)
    if best is None and zones and budget >= 0:
        # Tier 1: a node without a replica.
        best, budget = _best_in_tier(classes, _NO_ZONE, nodes, mem, spread, hosted, eligible, budget)
        if best is None and budget >= 0:
            # Tier 2: any pod without one.
            best, budget = _best_in_tier(
                classes, _NO_ZONE, None, mem, spread, hosted, eligible, budget
            )
    if budget < 0:
        return _best_among(adapter, usable, spread)
    return None if best is None else best[3]


def _best_in_tier(
    classes: list[PodClass],
    skip_zones: Container[str],
    nodes: Mapping[str, int] | None,
    mem: int,
    spread: bool,
    hosted: Mapping[PodKey, PodState],
    eligible: frozenset[PodKey] | None,
    budget: int,
) -> tuple[Entry | None, int]:
    """The best entry of one tier: classes outside `skip_zones`, pods off `nodes` (None: any
    node). Classes by the lowest max-lora-rank, then the strategy's choice of free memory. A
    negative budget returned means the eligible scan gave up (look at each usable pod instead)."""
    best: tuple[int, Entry] | None = None
    for klass in classes:
        if klass.zone in skip_zones:
            continue
        if eligible is None:
            entry = _scan(klass.entries, mem, spread, hosted, nodes)
        else:
            entry, budget = _scan_eligible(klass.entries, mem, spread, hosted, nodes, eligible, budget)
            if budget < 0:
                return None, budget
        if entry is not None:
            score = (-klass.max_rank, entry) if spread else (klass.max_rank, entry)
            if best is None or (score > best if spread else score < best):
                best = score
    return (None if best is None else best[1]), budget


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


def _best_among(adapter: AdapterState, pods: list[PodState], spread: bool) -> PodState | None:
    """The pod `find` would choose, by looking at each of `pods` (few, or the index gave up)."""
    mem = adapter.mem
    hosted = adapter.pods
    zones = adapter.zones
    nodes = adapter.nodes
    best: tuple[int, int, Entry] | None = None
    for pod in pods:
        entry = pod.entry
        if entry is None or entry[0] < mem or pod.key in hosted:
            continue
        tier_ = 2 if pod.node in nodes else 0 if pod.zone not in zones else 1
        if spread:
            score = (-tier_, -pod.max_rank, entry)
            if best is None or score > best:
                best = score
        else:
            score = (tier_, pod.max_rank, entry)
            if best is None or score < best:
                best = score
    return None if best is None else best[2][3]
