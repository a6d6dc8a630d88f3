"""Demand-aware placement: hot adapters on pods whose active slots they fit, cold ones packed away.

vLLM runs at most `--max-loras` adapters at once (`PodCapacity.active_slots`) and keeps up to
`--max-cpu-loras` registered (`adapter_slots`). A request for a registered adapter that is not
among the running ones waits while vLLM swaps it in, evicting the least recently used; so one cold
adapter on a pod of hot ones costs a swap for itself and one for the hot adapter it evicted. When
some demand is given (`AdapterDemand.demand_rps`) and pods say their active slots, each base model
group gets two roles, decided at the start of each run from its input:

- **clean pods** hold at most `active_slots` adapters, the hot ones: they never swap;
- **sinks** hold the rest, packed (the fullest sink that fits first), so cold requests swap among
  cold adapters.

How many pods are clean: as many as can be, in key order, while the other pods' slots and memory
(at the mean adapter size) still hold every replica that is not hot. Hot means among the `H`
hottest replicas wanted, `H` the clean pods' active slots, by demand per replica (`demand_rps /
replicas`); `theta` is the demand of the `H`-th. Roles depend on the input alone (pods, and the
replicas and demand of counted adapters; adapters on every pod are left out), never on the
placement: a steady input keeps its roles, and rebalancing, which only ever puts a replica into
its role, comes to rest.

A new replica of a hot adapter goes to a clean pod with a free active slot (zone and node spread
first, then the least heat, the most free memory, the key), a cold one to the fullest sink that
fits (zone and node spread first); when neither fits, to any pod as without demand (finding.py).
Within a priority and a round, replicas with more demand are placed first (run.py). Memory, rank, base model, selectors, priorities and preemption are
untouched: roles only choose among pods where a replica fits.

Rebalancing moves replicas that sit in the wrong role, at most `limit` per run: first a replica
on a clean pod whose demand fell below `theta / 2` (clearly cold) to a sink, then a replica on a
sink whose demand is at least `theta` to a clean pod with a free active slot; when no clean pod
has one, the coldest replica on a clean pod makes room if it is below `theta` and at most a quarter
as hot. The margins keep an adapter whose demand hovers near `theta` where it is. Without demand
(no `demand_rps`, or no pod with `active_slots`) nothing here runs; without any `demand_rps` the
placement is exactly as before (run.py orders by demand within a priority, 0 for all).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from typing import TYPE_CHECKING

from lora_controller.scheduler.finding import find, tier
from lora_controller.scheduler.model import Move
from lora_controller.scheduler.state import (
    UNBOUNDED,
    AdapterState,
    GroupState,
    PodState,
    attach,
    detach,
    reindex,
    reopen,
)

if TYPE_CHECKING:
    from lora_controller.scheduler.index import Index
    from lora_controller.scheduler.run import Run

_COLD = 2
"""A replica on a clean pod is moved out only below `theta / _COLD`."""
_SWAP = 4
"""A hot replica stuck on a sink takes the place of a lukewarm one at most `1 / _SWAP` as hot."""


def assign_roles(index: Index) -> None:
    """Decide, per base-model group, which pods are clean and the hot threshold `theta`."""
    for group in index.groups.values():
        _assign(group)


def _assign(group: GroupState) -> None:
    """Roles of one group, from its input alone (pods, and the wants of its counted adapters,
    state.count): a steady input keeps its roles, whatever the placement does."""
    for pod in group.pods.values():
        pod.clean = False
        pod.open_entry = None
    group.open = []
    group.theta = None
    if not group.levels:
        return
    pods = sorted((p for p in group.pods.values() if p.ready and p.active), key=lambda p: p.key)
    replicas = group.want_replicas
    levels = sorted(group.levels.items(), reverse=True)
    clean_slots = _clean_pods(pods, replicas, group.want_memory / max(replicas, 1),
                              sum(n for _, n in levels))
    group.theta = _theta(levels, clean_slots)
    for pod in pods:
        if pod.clean:
            reopen(pod)


def _theta(levels: list[tuple[int, int]], clean_slots: int) -> int | None:
    """The demand per replica of the last of the hottest replicas the clean slots hold."""
    theta = None
    counted = 0
    for qi, n in levels:
        if counted >= clean_slots:
            break
        theta = qi
        counted += n
    return theta


def _clean_pods(pods: list[PodState], replicas: int, mean_mem: float, hot_replicas: int) -> int:
    """Make pods clean, in key order, while the others keep slots and memory for every replica
    that is not hot (at the mean size). Returns the clean pods' active slots."""
    sink_slots = sum(max(0, p.slots_total) for p in pods)
    sink_mem = sum(UNBOUNDED if p.capacity_total is None else p.capacity_total for p in pods)
    clean_slots = 0
    for pod in pods:
        if clean_slots >= hot_replicas:
            break
        cold = replicas - min(hot_replicas, clean_slots + (pod.active or 0))
        slots = sink_slots - max(0, pod.slots_total)
        mem = sink_mem - (UNBOUNDED if pod.capacity_total is None else pod.capacity_total)
        if slots < cold or mem < cold * mean_mem:
            break
        pod.clean = True
        sink_slots, sink_mem = slots, mem
        clean_slots += pod.active or 0
    return clean_slots


def find_demand(adapter: AdapterState, spread: bool) -> PodState | None:
    """The pod for one more replica: by role when the group has roles, else as `find`."""
    group = adapter.group
    assert group is not None
    if group.theta is None:
        return find(adapter, spread)
    pod = None
    if adapter.qi >= group.theta:
        pod = _open_pod(adapter, group)
    if pod is None:
        pod = _sink(adapter, group)
    return pod if pod is not None else find(adapter, spread)


def _open_pod(adapter: AdapterState, group: GroupState) -> PodState | None:
    """The clean pod with a free active slot for a hot replica: the lowest tier, then the least
    heat, the most free memory, the key (the order of `group.open`)."""
    mem = adapter.mem
    best: PodState | None = None
    best_tier = 3
    for _, _, key, pod in group.open:
        if (-pod.free_mem) > -mem or key in adapter.pods or pod.max_rank < adapter.rank:
            continue
        if not adapter.may_use(pod):
            continue
        t = tier(adapter, pod)
        if t < best_tier:
            best, best_tier = pod, t
            if t == 0:
                break
    return best


def _sink(adapter: AdapterState, group: GroupState) -> PodState | None:
    """The fullest sink (not clean) that fits a replica, the lowest tier first: per class list
    (sorted by free memory), the first fitting entry of each tier."""
    mem = adapter.mem
    best: tuple[int, int, int, str] | None = None
    choice: PodState | None = None
    for klass in group.classes_for(adapter.rank):
        entries = klass.entries
        found = 3
        for i in range(bisect_left(entries, (mem,)), len(entries)):
            pod = entries[i][3]
            if pod.clean or pod.key in adapter.pods or not adapter.may_use(pod):
                continue
            t = tier(adapter, pod)
            if t >= found:
                continue
            found = t
            score = (t, pod.free_mem, pod.free_slots, pod.key)
            if best is None or score < best:
                best, choice = score, pod
            if t == 0:
                break
    return choice


def rebalance(run: Run, limit: int) -> int:
    """Move up to `limit` replicas that sit in the wrong role; returns how many moved."""
    moved = 0
    for group in run.index.groups.values():
        theta = group.theta
        if theta is None or moved >= limit:
            continue
        pods = [p for p in group.pods.values() if p.ready]
        # Only the first few candidates can move: no need to sort them all.
        cold = heapq.nsmallest(limit - moved, (
            (a.qi, a.key, p.key, a, p) for p in pods if p.clean
            for a in p.hosted.values() if a.qi * _COLD < theta and not a.fill))
        for _, _, _, adapter, pod in cold:
            if moved >= limit:
                break
            if not _move(run, adapter, pod, _sink(adapter, group)):
                break  # the sinks are full (for this size at least): no more tries this run
            moved += 1
        warm = heapq.nsmallest(limit - moved, (
            (-a.qi, a.key, p.key, a, p) for p in pods if not p.clean and p.active
            for a in p.hosted.values() if a.qi >= theta and not a.fill))
        for _, _, _, adapter, pod in warm:
            if moved >= limit:
                break
            if not group.open:
                if moved + 2 > limit or not _make_room(run, group, adapter):
                    break  # the hottest candidates come first: nobody later would make room
                moved += 1
            if _move(run, adapter, pod, _open_pod(adapter, group)):
                moved += 1
    return moved


def _make_room(run: Run, group: GroupState, hot: AdapterState) -> int:
    """No clean pod has a free active slot for `hot`: move the coldest replica of a clean pod to
    a sink if it is below `theta` and at most a quarter as hot as `hot`. Returns the moves (0 or 1)."""
    theta = group.theta
    assert theta is not None
    coldest = min(((a.qi, a.key, p.key, a, p) for p in group.pods.values() if p.clean
                   for a in p.hosted.values() if not a.fill), default=None)
    if coldest is None:
        return 0
    qi, _, _, adapter, pod = coldest
    if qi >= theta or qi * _SWAP > hot.qi or pod.key in hot.pods:
        return 0
    return 1 if _move(run, adapter, pod, _sink(adapter, group)) else 0


def _move(run: Run, adapter: AdapterState, source: PodState, target: PodState | None) -> bool:
    """Move `adapter`'s replica from `source` to `target` (None: nowhere to go)."""
    if target is None or (adapter.key, source.key) in run.evictors:
        return False
    detach(adapter, source)
    reindex(source)
    attach(adapter, target)
    reindex(target)
    run.event(source, adapter.prio)
    run.changed.add(adapter.key)
    run.rebalanced.append(Move(adapter=adapter.key, from_pod=source.key, to_pod=target.key,
                               by=adapter.key))
    return True
