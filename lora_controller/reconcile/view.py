"""The read side for routers: a narrow, read-only view of the fleet, and the one write it allows.

The router API depends on `FleetView` (a protocol), never on the controller's internals. Every
answer comes from the caches and from what pods confirm on `/v1/models` (never from intent), so
every replica, leader or standby, answers the same. The one action, `ensure`, asks the
namespace's reconcile to load a lazy adapter and waits for a pod to confirm it (lazy.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from lora_controller.api.types import LabelSelector, LoraAdapter
from lora_controller.reconcile.cache import ClusterCache
from lora_controller.reconcile.demand import Reported
from lora_controller.reconcile.dryrun import DryRun
from lora_controller.reconcile.history import ActionRecord, EventRecord, History
from lora_controller.reconcile.lazy import LazyLoads
from lora_controller.reconcile.observing import Observation, Observer
from lora_controller.reconcile.pipeline import NamespaceReconciler
from lora_controller.reconcile.pods import TargetPod
from lora_controller.reconcile.refs import CrRef, PodRef
from lora_controller.reconcile.state import NamespaceState
from lora_controller.reconcile.world import Wanted, adapter_memory, eligible_pods
from lora_controller.scheduler.model import AdapterKey, PodKey

READY_GRACE = 120.0
"""Seconds after the caches synced at most before a replica is ready, every namespace read or not."""


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    ip: str | None
    port: int
    base_url: str | None
    ready: bool
    observed_at: datetime | None  # when its `/v1/models` was last read


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    namespace: str
    lora_adapter: str
    base_model: str
    path: str
    version: str
    lazy: bool
    placed: tuple[str, ...]  # pod names the scheduler chose
    confirmed: tuple[PodInfo, ...]  # pods whose `/v1/models` lists it with that path
    failures: tuple[str, ...] = ()  # why it is not served as desired (as in status)
    demand_rps: float | None = None  # smoothed request rate (scaling mode Demand)
    scaling: str | None = None  # why it has the replicas it has (mode Demand)
    failed_pods: tuple[tuple[str, str], ...] = ()  # (pod, why its last load there failed)

    @property
    def key(self) -> AdapterKey:
        return AdapterKey(self.namespace, self.lora_adapter, self.name)


@dataclass(frozen=True)
class Placing:
    """What the scheduler weighed for one adapter, so a person can be told why it is (not) placed."""

    adapter: AdapterInfo
    memory: int  # bytes it takes on a pod
    rank: int | None
    priority: int
    preemption_policy: str
    replicas: int | None  # None: every eligible pod
    pod_selector: LabelSelector | None
    eligible: tuple[str, ...]  # pods serving its base model that its podSelector matches
    shortfall: tuple[str, ...]  # the scheduler's reason for each replica without a pod
    preempted: str | None  # the eviction that took a replica away, in words


@dataclass(frozen=True)
class PodDetail:
    pod: PodInfo
    observed: bool  # the last read succeeded
    error: str | None
    adapters: tuple[tuple[str, str | None], ...]  # (name, root) as the pod lists them
    placed: tuple[str, ...]  # adapter keys the scheduler placed there
    base_models: tuple[str, ...] = ()
    slots: int = 0  # adapters it keeps (max of --max-cpu-loras, --max-loras)
    active_slots: int = 0  # adapters it runs at once (--max-loras)
    max_lora_rank: int = 0
    memory_capacity: int | None = None  # bytes for adapters (annotation), None: unknown
    slots_used: int = 0  # placed
    memory_used: int = 0  # placed, bytes
    unusable: str | None = None  # why it takes no adapter


class EnsureFailed(Exception):
    """A lazy load that did not end with a confirmed pod; `reason` is CamelCase."""

    def __init__(self, reason: str, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class FleetView(Protocol):
    @property
    def synced(self) -> bool: ...

    def serves_namespace(self, namespace: str) -> bool: ...

    def adapters(self, namespace: str | None = None) -> list[AdapterInfo]: ...

    def adapters_named(self, name: str, namespace: str | None = None) -> list[AdapterInfo]: ...

    def adapter_keys(self, namespace: str | None = None) -> list[AdapterKey]: ...

    def adapter(self, key: AdapterKey) -> AdapterInfo | None: ...

    def pod(self, namespace: str, name: str) -> PodDetail | None: ...

    def pods(self, namespace: str | None = None) -> list[PodDetail]: ...

    def lora_adapter(self, namespace: str, name: str) -> LoraAdapter | None: ...

    def placing(self, adapter: AdapterInfo) -> Placing | None: ...

    def lora_adapters(self, namespace: str | None = None) -> list[LoraAdapter]: ...

    def recent_actions(self, namespace: str | None = None, limit: int = 100) -> list[ActionRecord]:
        ...

    def recent_events(self, namespace: str | None = None, limit: int = 100) -> list[EventRecord]:
        ...

    async def ensure(self, adapter: AdapterInfo, *, timeout: float) -> list[PodInfo]: ...

    def report_usage(self, namespace: str, counts: Mapping[str, int], *,
                     window: float) -> Reported: ...

    def note_lookup(self, adapter: AdapterInfo) -> None: ...

    async def dry_run(self, namespace: str, changes: Sequence[LoraAdapter]) -> DryRun: ...


def pod_info(pod: TargetPod, observed_at: datetime | None) -> PodInfo:
    return PodInfo(namespace=pod.namespace, name=pod.name, ip=pod.ip, port=pod.port,
                   base_url=pod.base_url, ready=pod.ready, observed_at=observed_at)


class ControllerView:
    """`FleetView` over the controller's caches, observer and per-namespace memory."""

    def __init__(self, *, cache: ClusterCache, observer: Observer, reconciler: NamespaceReconciler,
                 lazy: LazyLoads, history: History, namespaces: Sequence[str] | None) -> None:
        self.cache = cache
        self.observer = observer
        self.reconciler = reconciler
        self.states = reconciler.states
        self.lazy = lazy
        self.history = history
        self.namespaces = frozenset(namespaces) if namespaces else None
        self._ready = False
        self._synced_at: float | None = None
        self._pod_infos: dict[PodRef, tuple[TargetPod, Observation, PodInfo]] = {}
        self._made = 0

    @property
    def synced(self) -> bool:
        """Ready to answer routers (the replica's readiness; leadership plays no part): the
        resource caches are synced and every namespace holding resources was read once (its pods'
        `/v1/models`, the adapters each resource wants), so a replica that just started answers
        what the pods serve instead of 404s. A namespace that cannot be read keeps a replica out
        for `READY_GRACE` seconds at most. Once ready, it stays so: a namespace created later must
        not take every replica out of the Service at once."""
        if self._ready:
            return True
        if not self.cache.synced:
            return False
        now = self.reconciler.clock.monotonic()
        if self._synced_at is None:
            self._synced_at = now
        self._ready = now - self._synced_at >= READY_GRACE or all(
            (state := self.states.get(ns)) is not None and state.schedule is not None
            for ns in self.cache.namespaces())
        return self._ready

    def serves_namespace(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def _info(self, w: Wanted, state: NamespaceState) -> AdapterInfo:
        key = w.key
        placed = state.schedule.placement.get(key, ()) if state.schedule else ()
        report = next((r for r in state.reports.get(w.ref, ()) if r.name == w.adapter.name), None)
        scaled = state.scaled.get(key) if state.scaled else None
        confirmed = tuple(self._confirmed(w))
        names = {p.name for p in confirmed}
        return AdapterInfo(
            name=w.adapter.name, namespace=w.cr.metadata.namespace, lora_adapter=w.cr.metadata.name,
            base_model=w.cr.spec.base_model, path=w.path, version=w.adapter.version, lazy=w.lazy,
            placed=tuple(placed), confirmed=confirmed,
            failures=tuple(report.failures) if report else (),
            demand_rps=round(scaled.rate, 3) if scaled else None,
            scaling=scaled.reason if scaled else None,
            failed_pods=tuple((p, why) for p in placed if p not in names
                              and (why := state.last_errors.get((p, w.adapter.name)))))

    def _confirmed(self, w: Wanted) -> list[PodInfo]:
        out = []
        for ref in self.observer.pods_listing(w.adapter.name):
            if ref.namespace != w.cr.metadata.namespace:
                continue
            pod, obs = self.cache.pod(ref), self.observer.get(ref)
            if pod is not None and obs is not None and obs.ok and \
                    obs.adapters.get(w.adapter.name) == w.path:
                out.append(self._pod_info(pod, obs))
        return out

    def _pod_info(self, pod: TargetPod, obs: Observation) -> PodInfo:
        """The pod as answered, made once per (pod object, read of the pod), not per answer."""
        known = self._pod_infos.get(pod.ref)
        if known is not None and known[0] is pod and known[1] is obs:
            return known[2]
        self._made += 1
        if self._made % 4096 == 0:  # pods come and go: forget those that went
            self._pod_infos = {ref: v for ref, v in self._pod_infos.items()
                               if self.cache.pod(ref) is v[0]}
        info = pod_info(pod, obs.observed_at)
        self._pod_infos[pod.ref] = (pod, obs, info)
        return info

    def adapters(self, namespace: str | None = None) -> list[AdapterInfo]:
        out: list[AdapterInfo] = []
        for ns in sorted(self.states) if namespace is None else [namespace]:
            state = self.states.get(ns)
            if state is not None:
                wanted = state.selection.wanted
                out.extend(self._info(wanted[k], state) for k in sorted(wanted))
        return out

    def adapters_named(self, name: str, namespace: str | None = None) -> list[AdapterInfo]:
        out: list[AdapterInfo] = []
        for ns in sorted(self.states) if namespace is None else [namespace]:
            state = self.states.get(ns)
            if state is not None:
                out.extend(self._info(w, state) for w in state.by_name.get(name, ()))
        return out

    def adapter_keys(self, namespace: str | None = None) -> list[AdapterKey]:
        """Every selected adapter's key, sorted: cheap, for paging before building answers."""
        out: list[AdapterKey] = []
        for ns in sorted(self.states) if namespace is None else [namespace]:
            state = self.states.get(ns)
            if state is not None:
                out.extend(sorted(state.selection.wanted))
        return out

    def adapter(self, key: AdapterKey) -> AdapterInfo | None:
        state = self.states.get(key.namespace)
        w = state.selection.wanted.get(key) if state is not None else None
        return self._info(w, state) if state is not None and w is not None else None

    def pod(self, namespace: str, name: str) -> PodDetail | None:
        ref = PodRef(namespace, name)
        pod = self.cache.pod(ref)
        if pod is None:
            return None
        return self._detail(pod)

    def _detail(self, pod: TargetPod) -> PodDetail:
        obs = self.observer.get(pod.ref)
        state = self.states.get(pod.namespace)
        placed: tuple[AdapterKey, ...] = ()
        memory = 0
        if state is not None and state.schedule is not None:
            placed = state.schedule.get_pod_adapters(PodKey(pod.name))
            wanted = state.selection.wanted
            memory = sum(adapter_memory(wanted[k].cr, wanted[k].adapter) for k in placed
                         if k in wanted)
        ok = obs is not None and obs.ok
        return PodDetail(
            pod=pod_info(pod, obs.observed_at if obs is not None and ok else None), observed=ok,
            error=obs.error if obs is not None else "not observed yet",
            adapters=tuple(obs.adapters.items()) if obs is not None and ok else (),
            placed=tuple(str(k) for k in placed), base_models=pod.served_models,
            slots=pod.slots, active_slots=pod.max_loras, max_lora_rank=pod.max_lora_rank,
            memory_capacity=pod.memory_capacity, slots_used=len(placed), memory_used=memory,
            unusable=pod.unusable_reason)

    def pods(self, namespace: str | None = None) -> list[PodDetail]:
        pods = self.cache.pods(namespace) if namespace else self.cache.all_pods()
        return [self._detail(p) for p in pods if p.served_models and p.lora_enabled]

    def lora_adapter(self, namespace: str, name: str) -> LoraAdapter | None:
        return self.cache.cr(CrRef(namespace, name))

    def lora_adapters(self, namespace: str | None = None) -> list[LoraAdapter]:
        return self.cache.crs(namespace)

    def placing(self, adapter: AdapterInfo) -> Placing | None:
        """The adapter's needs and limits as the last schedule of its namespace saw them."""
        state = self.states.get(adapter.namespace)
        w = state.selection.wanted.get(adapter.key) if state is not None else None
        if state is None or w is None:
            return None
        sched, deploy = w.cr.spec.scheduling(), w.cr.spec.deployment()
        short = state.schedule.unplaced.get(w.key) if state.schedule else None
        evicted = state.preempted.get(w.key)
        pods = [p for p in self.cache.pods(adapter.namespace) if p.served_models and p.lora_enabled]
        return Placing(
            adapter=adapter, memory=adapter_memory(w.cr, w.adapter), rank=w.adapter.rank,
            priority=sched.priority, preemption_policy=sched.preemption_policy.value,
            replicas=deploy.replicas, pod_selector=deploy.pod_selector,
            eligible=tuple(sorted(eligible_pods(w.cr, pods))),
            shortfall=short.reasons if short is not None else (),
            preempted=(f"preempted on pod {evicted.pod} by {evicted.by.cr_ref} "
                       f"(priority {evicted.by_priority})") if evicted is not None else None)

    def recent_actions(self, namespace: str | None = None, limit: int = 100) -> list[ActionRecord]:
        return self.history.actions(namespace, limit)

    def recent_events(self, namespace: str | None = None, limit: int = 100) -> list[EventRecord]:
        return self.history.events(namespace, limit)

    async def dry_run(self, namespace: str, changes: Sequence[LoraAdapter]) -> DryRun:
        return await self.reconciler.dry_run(namespace, changes)

    def report_usage(self, namespace: str, counts: Mapping[str, int], *,
                     window: float) -> Reported:
        state = self.states.get(namespace)
        known = {name: [w.key for w in ws] for name, ws in state.by_name.items()} if state else {}
        done = self.reconciler.signals.report(known, counts, window=window,
                                              now=self.reconciler.clock.monotonic())
        if done.accepted:  # place by the new demand soon, not at the next resync
            self.reconciler.wake(namespace)
        return done

    def note_lookup(self, adapter: AdapterInfo) -> None:
        self.reconciler.signals.lookup(adapter.key, self.reconciler.clock.monotonic())

    async def ensure(self, adapter: AdapterInfo, *, timeout: float) -> list[PodInfo]:
        """Have the adapter's namespace load it, and wait until a pod confirms it."""
        ref = f"LoraAdapter {adapter.namespace}/{adapter.lora_adapter}"
        if not adapter.placed and adapter.scaling is None:  # (demand-scaled: the ask scales it)
            raise EnsureFailed("NotPlaced", f"adapter {adapter.name} has no pod: see the status "
                               f"of {ref}", retry_after=10)
        request = self.lazy.request(adapter.key)
        try:
            why = await asyncio.wait_for(asyncio.shield(request), timeout)
        except TimeoutError:
            raise EnsureFailed("LoadTimeout", f"adapter {adapter.name} is still loading",
                               retry_after=5) from None
        if why is not None:
            raise EnsureFailed("LoadFailed", f"loading adapter {adapter.name} failed: {why}",
                               retry_after=10)
        state = self.states.get(adapter.namespace)
        w = next((w for w in (state.by_name.get(adapter.name, ()) if state else ())
                  if w.key == adapter.key), None)
        pods = self._confirmed(w) if w is not None else []
        if not pods:
            raise EnsureFailed("LoadFailed", f"no pod confirmed adapter {adapter.name}; see the "
                               f"status of {ref}", retry_after=5)
        return pods

