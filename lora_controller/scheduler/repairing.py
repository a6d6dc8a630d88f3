"""Step 5 of a run, repair: one move to place a replica that fits nowhere, even by preemption.

For each missing replica M, highest priority first (then the placing order), look for a pod P that
M may use, Ready, without M, holding a replica R that is not larger than M and fits on another pod
Q, such that P then has room for M; move R to Q (Q chosen as a placement would choose it for R) and
put M on P. R keeps its replica count, so nobody loses anything. The greedy pass is one step of a
bipartite matching and cannot see that a tie it broke will block a later replica; one move is an
augmenting path of length one. Longer chains are not searched.

Why R is never larger than M: then a repair never leaves more free memory or slots on P than
before, and Q only loses room. Room still only shrinks during a run (but for evictions), so the
stability argument of run.py keeps holding: a replica that fits nowhere still fits nowhere later,
and a repair cannot give room to an adapter the greedy pass turned away. A replica this run placed
by evicting others is never moved.

A failed repair is certified like a failed search (`repair_at`): it is redone only if a pod of the
base model gained room since, or a repair changed a pod M may use (a repair leaves its source pod
no roomier and its target pod less roomy, so nothing else can open a new move). Replicas known to
fit on no other pod are remembered until something moves.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from typing import TYPE_CHECKING

from lora_controller.scheduler.finding import find
from lora_controller.scheduler.model import AdapterKey, Move, PodKey
from lora_controller.scheduler.run import LAST_ROUND
from lora_controller.scheduler.state import (
    AdapterState,
    Entry,
    FullEntry,
    GroupState,
    PodState,
    attach,
    detach,
    reindex,
)

if TYPE_CHECKING:
    from lora_controller.scheduler.run import Run


def repair_pass(run: Run) -> bool:
    """Try a one-move repair for every missing replica, highest priority first; True if any."""
    adapters = run.index.adapters
    order = sorted(
        (adapters[k] for k in run.index.short),
        key=lambda a: (-a.prio, LAST_ROUND if a.fill else len(a.pods), -a.q, -a.mem, a.key),
    )
    repaired = False
    stuck: set[AdapterKey] = set()
    for adapter in order:
        while adapter.short and _repair(run, adapter, stuck):
            repaired = True
            stuck = set()
    return repaired


def _repair(run: Run, adapter: AdapterState, stuck: set[AdapterKey]) -> bool:
    """Place one replica of `adapter` on a pod P it may use by moving one replica R from P to
    another pod Q that has room for R. `stuck` holds adapters known to fit on no other pod
    (valid until something moves)."""
    group = adapter.group
    if group is None:
        return False
    at = adapter.repair_at
    if at is not None and group.last_gain <= at and not _swapped_near(run, adapter, at):
        return False  # failed against a state that only lost room since
    move = _find_move(run, adapter, group, stuck)
    if move is None:
        if adapter.repair_at is None:
            run.marked_repair.append(adapter)
        adapter.repair_at = len(run.events)
        return False
    pod, mover = move
    detach(mover, pod)
    attach(adapter, pod)
    reindex(pod)
    target = find(mover, run.spread)
    assert target is not None, "the room found for the moved replica is still there"
    attach(mover, target)
    reindex(target)
    run.event(pod, mover.prio, gain=False)
    run.changed.add(adapter.key)
    run.changed.add(mover.key)
    run.moves.append(Move(adapter=mover.key, from_pod=pod.key, to_pod=target.key, by=adapter.key))
    return True


def _swapped_near(run: Run, adapter: AdapterState, start: int) -> bool:
    """Did a repair since event `start` change a pod `adapter` may use?

    Without room gained anywhere, only such a pod can offer a new repair: a repair leaves its
    target pod with less room and its source pod with no more, but other replicas on it.
    """
    group = adapter.group
    for pod, _ in run.events[start:]:
        if (
            pod.group is group and pod.ready and pod.max_rank >= adapter.rank
            and pod.key not in adapter.pods and adapter.may_use(pod)
        ):
            return True
    return False


def _find_move(
    run: Run, adapter: AdapterState, group: GroupState, stuck: set[AdapterKey]
) -> tuple[PodState, AdapterState] | None:
    """The pod P and the replica R on it for a one-move repair, or None.

    P is chosen as a placement would be (zone, node, lowest max-lora-rank, the strategy's choice
    of free memory); on P, the smallest R that frees enough and fits on another pod, then the
    lowest priority, then key.
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
    ranked = _sources(adapter, group, mem - limit, run.spread)
    while ranked:
        pod = heapq.heappop(ranked)[-1]
        need = mem - pod.free_mem
        movers = sorted(
            (r for r in pod.hosted.values()
             if need <= r.mem <= limit and r.mem <= room[r.rank] and r.key not in stuck
             and (r.key, pod.key) not in run.evictors),
            key=lambda r: (r.mem, r.prio, r.key),
        )
        for mover in movers:
            if find(mover, run.spread) is None:
                stuck.add(mover.key)
                continue
            return pod, mover
    return None


def _sources(
    adapter: AdapterState, group: GroupState, threshold: int, spread: bool
) -> list[tuple[int, int, int, PodKey, PodState]]:
    """The pods P may be, as a heap in the order a placement would prefer them: pods the adapter
    may use with at least `threshold` free, with a free slot (class lists) or without (the full
    list), whose largest replica could free enough."""
    mem = adapter.mem
    hosted = adapter.pods
    eligible = adapter.eligible
    rank = adapter.rank
    zones = adapter.zones
    nodes = adapter.nodes
    sign = -1 if spread else 1
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
    return ranked
