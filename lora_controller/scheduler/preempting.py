"""Which replicas of lower priority to evict so that a replica fits, and on which pod.

On each pod the adapter may use, the scheduler takes the smallest set of replicas of strictly lower
priority whose removal makes the replica fit (fewest victims, then the lowest priorities, then the
smallest adapters); among pods, the fewest victims wins, then the lowest highest-victim priority,
then the lowest sum, then the best spread, then the key. Nothing is chosen unless the replica then
fits. The per-priority counts kept on each pod and group (state.py) answer "could eviction help
here at all" without looking at the replicas, so preemption costs nothing while no lower priority
is placed. These functions only choose; the run evicts.
"""

from __future__ import annotations

from lora_controller.scheduler.finding import tier
from lora_controller.scheduler.model import PodKey
from lora_controller.scheduler.state import AdapterState, PodState


def victims_on(pod: PodState, adapter: AdapterState) -> list[AdapterState] | None:
    """The victims that make room for `adapter` on `pod`, or None if no eviction can."""
    need_mem = adapter.mem - pod.free_mem
    need_slots = 1 - pod.free_slots
    mem, count, single = _evictable(pod, adapter.prio)
    if count == 0 or count < need_slots or mem < need_mem:
        return None
    if need_slots <= 1 and single >= need_mem:
        return [_single_victim(pod, adapter.prio, need_mem)]
    return _choose_victims(pod, adapter.prio, need_mem, need_slots)


def preemption_target(adapter: AdapterState) -> tuple[PodState, list[AdapterState]] | None:
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
            score1 = (lowest, tier(adapter, pod), pod.key)
            if single_best is None or score1 < single_best:
                single_best, single_pod = score1, pod
                if lowest == unbeatable and score1[1] == 0:
                    break
            continue
        if single_pod is not None:
            continue  # one victim elsewhere beats several here
        victims = _choose_victims(pod, priority, need_mem, need_slots)
        prios = [v.prio for v in victims]
        score = (len(victims), max(prios), sum(prios), tier(adapter, pod), pod.key)
        if best_score is None or score < best_score:
            best_score, best = score, (pod, victims)
    if single_pod is not None:
        need_mem = adapter.mem - single_pod.free_mem
        return single_pod, [_single_victim(single_pod, priority, need_mem)]
    return best


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
