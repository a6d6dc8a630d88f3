"""One namespace as a reconcile sees it: its resources, its pods and what each pod reports.

Built once at the start of a reconcile from the caches, so every stage reads the same world
(re-reading the caches in each stage would let stages disagree when an event lands mid-reconcile).
Pods that are usable but have not been read yet are read first: without a pod's `/v1/models`,
the controller cannot know what to load or unload there. After the execute stage, the touched
pods are read again and a refreshed snapshot carries their new reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol

from lora_controller.api.types import LoraAdapter
from lora_controller.reconcile.observing import Observation
from lora_controller.reconcile.pods import TargetPod
from lora_controller.reconcile.refs import PodRef


class PodReports(Protocol):
    """What the snapshot needs of the observer."""

    def get(self, pod_key: PodRef) -> Observation | None: ...

    async def probe(self, pod_key: PodRef) -> Observation | None: ...


class NamespaceCache(Protocol):
    """What the snapshot needs of the cluster cache."""

    def crs(self, namespace: str | None = None) -> list[LoraAdapter]: ...

    def pods(self, namespace: str) -> list[TargetPod]: ...


@dataclass(frozen=True)
class NamespaceSnapshot:
    namespace: str
    live: tuple[LoraAdapter, ...]
    deleting: tuple[LoraAdapter, ...]
    pods: tuple[TargetPod, ...]  # sorted by name
    observations: Mapping[str, Observation] = field(default_factory=dict)  # pod name -> report

    @property
    def crs(self) -> tuple[LoraAdapter, ...]:
        return self.live + self.deleting

    @cached_property
    def pods_by_name(self) -> Mapping[str, TargetPod]:
        return {p.name: p for p in self.pods}

    def pod(self, name: str) -> TargetPod | None:
        return self.pods_by_name.get(name)

    def observed(self, pod_name: str) -> Observation | None:
        """The pod's latest report of its current vLLM server (None: not read yet)."""
        return self.observations.get(pod_name)

    @cached_property
    def readable(self) -> Mapping[PodRef, Mapping[str, str | None]]:
        """Adapters (name -> root) of every pod whose last read succeeded."""
        return {obs.pod: obs.adapters for obs in self.observations.values() if obs.ok}

    def unobserved_usable(self) -> list[TargetPod]:
        """Usable pods whose last read failed or never happened."""
        return [p for p in self.pods if p.usable and not self._ok(p.name)]

    def _ok(self, pod_name: str) -> bool:
        obs = self.observations.get(pod_name)
        return obs is not None and obs.ok

    def with_reports(self, reports: PodReports, pods: Iterable[PodRef]) -> NamespaceSnapshot:
        """The same snapshot with fresh reports of `pods` (after they were acted on)."""
        observations = dict(self.observations)
        for ref in pods:
            obs = reports.get(ref)
            if obs is None:
                observations.pop(ref.name, None)
            else:
                observations[ref.name] = obs
        return replace(self, observations=observations)


async def take_snapshot(cache: NamespaceCache, reports: PodReports,
                        namespace: str) -> NamespaceSnapshot:
    """Read the namespace from the caches, reading pods never read before."""
    crs = cache.crs(namespace)
    pods = cache.pods(namespace)
    unread = [p.ref for p in pods if p.usable and reports.get(p.ref) is None]
    if unread:
        await asyncio.gather(*(reports.probe(ref) for ref in unread))
    observations = {p.name: obs for p in pods if (obs := reports.get(p.ref)) is not None}
    return NamespaceSnapshot(
        namespace=namespace,
        live=tuple(c for c in crs if not c.metadata.deletion_timestamp),
        deleting=tuple(c for c in crs if c.metadata.deletion_timestamp),
        pods=tuple(pods),
        observations=observations,
    )
