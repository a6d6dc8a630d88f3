"""Demand-aware placement: hot adapters on pods whose active slots they fit, cold ones packed away.

vLLM runs at most `--max-loras` adapters at once (`PodCapacity.active_slots`) and keeps up to
`--max-cpu-loras` registered (`adapter_slots`). A request for a registered adapter that is not
among the running ones waits while vLLM swaps it in, evicting the least recently used; so one cold
adapter on a pod of hot ones costs a swap for itself and one for the hot adapter it evicted. When
some demand is given (`AdapterDemand.demand_rps`) and pods say their active slots, each base model
group gets two roles, decided at the start of a run from the state it starts from:

- **clean pods** hold at most `active_slots` adapters, the hot ones: they never swap;
- **sinks** hold the rest, packed (the fullest sink that fits first), so cold requests swap among
  cold adapters.

How many pods are clean: as many as can be while the other pods' slots still hold every replica
that is not hot (pods already holding at most their active slots come first, the hottest first,
then by key, so the roles of a steady state do not change). Hot means among the `H` hottest
replicas, `H` the clean pods' active slots, by demand per replica (`demand_rps / replicas`);
`theta` is the demand of the `H`-th.

A new replica of a hot adapter goes to a clean pod with a free active slot (the least heat first,
then the placement order of finding.py), a cold one to a sink; when neither fits, to any pod as
without demand (finding.py). Memory, rank, base model, selectors, priorities and preemption are
untouched: roles only choose among pods where a replica fits.

Rebalancing moves replicas that sit in the wrong role, at most `limit` per run: first a replica
on a clean pod whose demand fell below `theta / 2` (clearly cold) to a sink, then a replica on a
sink whose demand is at least `theta` to a clean pod with a free active slot. The margin keeps an
adapter whose demand hovers near `theta` where it is. Without demand (no `demand_rps`, or no pod
with `active_slots`) nothing here runs and placement is exactly as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lora_controller.scheduler.finding import find, tier
from lora_controller.scheduler.model import Move
from lora_controller.scheduler.state import (
    AdapterState,
    GroupState,
    PodState,
    attach,
    detach,
    reindex,
)

if TYPE_CHECKING:
    from lora_controller.scheduler.index import Index
    from lora_controller.scheduler.run import Run

_COLD = 0.5
"""A replica on a clean pod is moved out only below this fraction of `theta`."""


def assign_roles(index: Index) -> None:
    """Decide, per base-model group, which pods are clean and the hot threshold `theta`."""
    by_group: dict[str, list[AdapterState]] = {}
    for adapter in index.adapters.values():
        if adapter.group is not None:
            by_group.setdefault(adapter.group.base_model, []).append(adapter)
    for group in index.groups.values():
        _assign(group, by_group.get(group.base_model, []))


def _assign(group: GroupState, adapters: list[AdapterState]) -> None:
    pods = [p for p in group.pods.values() if p.ready and p.active is not None]
    for pod in group.pods.values():
        pod.clean = False
    group.theta = None
    hot = sorted(((a.q, a.wanted or 1) for a in adapters if a.q > 0), reverse=True)
    if not pods or not hot:
        return
    replicas = sum(a.wanted if not a.fill else len(a.pods) for a in adapters)
    # Pods shaped like clean ones (no more adapters than active slots) first, hottest first.
    pods.sort(key=lambda p: (len(p.hosted) > (p.active or 0), -sum(a.q for a in p.hosted.values()),
                             p.key))
    sink_slots = sum(max(0, p.slots_total) for p in pods)
    hot_replicas = sum(n for _, n in hot)
    clean_slots = 0
    for pod in pods:
        active = pod.active or 0
        if active <= 0 or clean_slots >= hot_replicas:
            continue
        room = sink_slots - max(0, pod.slots_total)
        if room < replicas - min(hot_replicas, clean_slots + active):
            break
        pod.clean = True
        sink_slots = room
        clean_slots += active
    if clean_slots == 0:
        return
    counted = 0
    theta = hot[0][0]
    for q, n in hot:
        if counted >= clean_slots:
            break
        theta = q
        counted += n
    group.theta = theta


def is_hot(adapter: AdapterState) -> bool:
    group = adapter.group
    return group is not None and group.theta is not None and adapter.q >= group.theta


def find_demand(adapter: AdapterState, spread: bool) -> PodState | None:
    """The pod for one more replica: by role when the group has roles, else as `find`."""
    group = adapter.group
    assert group is not None
    if group.theta is None:
        return find(adapter, spread)
    usable = group.usable_pods(adapter.rank, adapter.eligible)
    if is_hot(adapter):
        pod = _best(adapter, usable, clean=True)
        if pod is not None:
            return pod
    pod = _best(adapter, usable, clean=False)
    return pod if pod is not None else find(adapter, spread)


def _best(adapter: AdapterState, pods: list[PodState], *, clean: bool) -> PodState | None:
    """A clean pod with a free active slot (least heat first), or the fullest sink that fits."""
    mem = adapter.mem
    hosted = adapter.pods
    best: tuple[object, ...] | None = None
    choice: PodState | None = None
    for pod in pods:
        if pod.clean is not clean or pod.key in hosted or pod.free_slots < 1 or pod.free_mem < mem:
            continue
        if clean:
            if len(pod.hosted) >= (pod.active or 0):
                continue
            score: tuple[object, ...] = (tier(adapter, pod), pod.heat(), -pod.free_mem, pod.key)
        else:
            score = (tier(adapter, pod), pod.free_slots, pod.free_mem, pod.key)
        if best is None or score < best:
            best, choice = score, pod
    return choice


def rebalance(run: Run, limit: int) -> int:
    """Move up to `limit` replicas that sit in the wrong role; returns how many moved."""
    moved = 0
    for group in run.index.groups.values():
        theta = group.theta
        if theta is None or moved >= limit:
            continue
        pods = sorted(group.pods.values(), key=lambda p: p.key)
        cold = sorted(((a.q, a.key, a, p) for p in pods if p.clean for a in p.hosted.values()
                       if a.q < theta * _COLD), key=lambda x: (x[0], x[1]))
        for _, _, adapter, pod in cold:
            if moved < limit and _move(run, adapter, pod, clean=False):
                moved += 1
        warm = sorted(((-a.q, a.key, a, p) for p in pods if not p.clean and p.ready
                       for a in p.hosted.values() if a.q >= theta), key=lambda x: (x[0], x[1]))
        for _, _, adapter, pod in warm:
            if moved < limit and _move(run, adapter, pod, clean=True):
                moved += 1
    return moved


def _move(run: Run, adapter: AdapterState, source: PodState, *, clean: bool) -> bool:
    """Move `adapter`'s replica on `source` to the best pod of the other role, if one fits."""
    if (adapter.key, source.key) in run.evictors or adapter.group is None:
        return False
    target = _best(adapter, adapter.group.usable_pods(adapter.rank, adapter.eligible), clean=clean)
    if target is None:
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
