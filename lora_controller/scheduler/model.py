"""The scheduler's vocabulary: what is asked for, what pods offer, and what the scheduler answers.

Everything here is an immutable value, so one input can be handed to the scheduler twice and give the
same answer twice, and a result can be shared with the router API without copying.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple, NewType

# `schedulingConfig.preemptionPolicy` of the CRD, one vocabulary for the API and the scheduler:
# LOWER_PRIORITY may evict adapters of strictly lower priority to make room, NONE never evicts.
from lora_controller.api.types import PreemptionPolicy as PreemptionPolicy

PodKey = NewType("PodKey", str)
"""A pod's identity as the reconciler names it (for example `namespace/name`); opaque here."""


class AdapterKey(NamedTuple):
    """An adapter's identity: the CR that declares it and its vLLM adapter name (`lora_name`)."""

    namespace: str
    cr: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.cr}/{self.name}"

    @property
    def cr_ref(self) -> str:
        """`namespace/cr`: the CR a person should look at."""
        return f"{self.namespace}/{self.cr}"


Placement = Mapping[AdapterKey, tuple[PodKey, ...]]
"""Which pods hold (or should hold) each adapter. An absent key and an empty tuple mean the same."""


class Strategy(enum.StrEnum):
    """Which pod gets a replica when several have room."""

    SPREAD = "Spread"
    """The pod with the most free memory (then free slots): adapters spread evenly over pods, so
    no pod serves far more adapters than its peers."""
    PACK = "Pack"
    """The pod with the least free memory that still fits (best fit): fills pods one by one and
    keeps large holes for large adapters."""


@dataclass(frozen=True, slots=True)
class AdapterDemand:
    """One adapter and what it needs.

    `memory_bytes` 0 means unknown: the adapter still takes an adapter slot. `rank` None means
    unknown: it fits any `--max-lora-rank`. `replicas` None means every eligible pod that has room.
    `eligible_pods` is the set of pods its CR's `podSelector` matches; None means every pod of its
    base model. Keys of pods that are not in the input, or serve another base model, are ignored.
    Pass one frozenset object for all adapters of a CR: the scheduler caches per set object.
    `demand_rps` is the adapter's smoothed request rate (scaling.py); with it, and pods that give
    their `active_slots`, hot adapters are placed apart from cold ones (heat.py). 0 = unknown.
    """

    key: AdapterKey
    base_model: str
    memory_bytes: int = 0
    rank: int | None = None
    priority: int = 0
    preemption_policy: PreemptionPolicy = PreemptionPolicy.LOWER_PRIORITY
    replicas: int | None = None
    eligible_pods: frozenset[PodKey] | None = None
    demand_rps: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.demand_rps < float("inf"):
            raise ValueError(f"{self.key}: demand_rps must be finite and >= 0, got {self.demand_rps}")
        if self.memory_bytes < 0:
            raise ValueError(f"{self.key}: memory_bytes must be >= 0, got {self.memory_bytes}")
        if self.rank is not None and self.rank < 0:
            raise ValueError(f"{self.key}: rank must be >= 0, got {self.rank}")
        if self.replicas is not None and self.replicas < 0:
            raise ValueError(f"{self.key}: replicas must be >= 0 or None, got {self.replicas}")


@dataclass(frozen=True, slots=True)
class PodCapacity:
    """One vLLM pod and its LoRA limits.

    `adapter_slots` is the pod's `--max-cpu-loras` (vLLM's default: `--max-loras`): how many adapters
    it keeps in its CPU cache; registering more makes vLLM evict and re-read adapters from disk on
    every switch. `memory_capacity_bytes` None means unknown: only slots limit the pod. Adapters that
    someone else loaded (`--lora-modules`) are `reserved_*`: they use room and are never moved.
    `active_slots` is `--max-loras`, the adapters it runs at once; None means unknown.
    """

    key: PodKey
    base_model: str
    adapter_slots: int
    max_lora_rank: int = 16
    memory_capacity_bytes: int | None = None
    ready: bool = True
    node: str | None = None
    zone: str | None = None
    reserved_slots: int = 0
    reserved_memory_bytes: int = 0
    active_slots: int | None = None

    def __post_init__(self) -> None:
        for name in ("adapter_slots", "max_lora_rank", "reserved_slots", "reserved_memory_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"pod {self.key}: {name} must be >= 0")
        if self.active_slots is not None and self.active_slots < 0:
            raise ValueError(f"pod {self.key}: active_slots must be >= 0 or None")
        if self.memory_capacity_bytes is not None and self.memory_capacity_bytes < 0:
            raise ValueError(f"pod {self.key}: memory_capacity_bytes must be >= 0 or None")


@dataclass(frozen=True, slots=True)
class Preemption:
    """An adapter replica evicted from a pod to make room for one of higher priority."""

    victim: AdapterKey
    pod: PodKey
    by: AdapterKey
    victim_priority: int
    by_priority: int

    def __str__(self) -> str:
        return (
            f"{self.victim} (priority {self.victim_priority}) preempted on pod {self.pod} "
            f"by {self.by} (priority {self.by_priority})"
        )


@dataclass(frozen=True, slots=True)
class Move:
    """An adapter replica moved from one pod to another to make room for a replica that would
    otherwise have no pod. The moved adapter keeps its replica count."""

    adapter: AdapterKey
    from_pod: PodKey
    to_pod: PodKey
    by: AdapterKey

    def __str__(self) -> str:
        return f"{self.adapter} moved from pod {self.from_pod} to pod {self.to_pod} for {self.by}"


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Replicas of one adapter that could not be placed, with one reason per missing replica.

    `wanted` is None for an adapter that wants every eligible pod: it is short only when it is
    on no pod at all.
    """

    adapter: AdapterKey
    wanted: int | None
    placed: int
    reasons: tuple[str, ...]

    @property
    def missing(self) -> int:
        """How many replicas are missing."""
        return len(self.reasons)

    @property
    def message(self) -> str:
        """One line for `status.failedAdapters[].reason`."""
        counts = Counter(self.reasons)
        parts = [
            reason if count == 1 else f"{count} replicas: {reason}" for reason, count in counts.items()
        ]
        wanted = "every eligible pod" if self.wanted is None else str(self.wanted)
        return f"placed {self.placed} of {wanted}: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class AdapterStatus:
    """What the scheduler decided for one adapter (the proposal's `GetAdapterStatus`)."""

    adapter: AdapterKey
    pods: tuple[PodKey, ...]
    shortfall: Shortfall | None
    preempted: tuple[Preemption, ...]
    moved: tuple[Move, ...] = ()

    @property
    def fully_placed(self) -> bool:
        """Every wanted replica has a pod."""
        return self.shortfall is None


@dataclass(frozen=True)
class Schedule:
    """The scheduler's answer for one base model (or several): the desired placement, what could not
    be placed and why, and the evictions it decided.

    `placement` has an entry for every adapter asked for (an empty tuple when it has no pod), its pods
    sorted by key. `preemptions` lists the evictions made by this run, in the order they were decided;
    `moves` the replicas this run moved to make room for a replica that fitted nowhere else.
    """

    placement: Placement
    unplaced: Mapping[AdapterKey, Shortfall]
    preemptions: tuple[Preemption, ...] = ()
    moves: tuple[Move, ...] = ()
    rebalanced: tuple[Move, ...] = ()
    """Replicas moved between a pod for hot adapters and one for cold ones (heat.py); in each,
    `by` is the moved adapter itself. Empty without demand."""

    @cached_property
    def pod_adapters(self) -> Mapping[PodKey, tuple[AdapterKey, ...]]:
        """Adapters per pod, sorted; built on first use."""
        by_pod: dict[PodKey, list[AdapterKey]] = {}
        for adapter, pods in self.placement.items():
            for pod in pods:
                by_pod.setdefault(pod, []).append(adapter)
        return {pod: tuple(sorted(keys)) for pod, keys in sorted(by_pod.items())}

    def get_adapter_status(self, adapter: AdapterKey) -> AdapterStatus:
        """The proposal's `GetAdapterStatus(adapter)`. Raises KeyError for an adapter not asked for."""
        pods = self.placement[adapter]
        return AdapterStatus(
            adapter=adapter,
            pods=pods,
            shortfall=self.unplaced.get(adapter),
            preempted=tuple(p for p in self.preemptions if p.victim == adapter),
            moved=tuple(m for m in self.moves if m.adapter == adapter),
        )

    def get_pod_adapters(self, pod: PodKey) -> tuple[AdapterKey, ...]:
        """The proposal's `GetPodAdapters(pod)`: adapters placed on the pod (empty if none)."""
        return self.pod_adapters.get(pod, ())
