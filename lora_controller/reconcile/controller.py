"""The LoRA controller: informers in, one level-based reconcile per namespace, truthful status out.

Events only enqueue a namespace; a reconcile reads everything from the caches and runs
discover (sources) -> place (scheduler, the whole namespace at once) -> stage (adapter store) ->
plan (pure: desired vs `/v1/models`) -> execute (leader only) -> confirm (re-read the touched pods)
-> status (only when changed) and events. Standby replicas run the informers and the observer, so
their router API answers from the same truth, but they write nothing and call no load or unload.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

from lora_controller.api.types import FINALIZER, LoraAdapter, LoraAdapterStatus, SourceType
from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube.client import JSON_PATCH, ApiError, KubeClient
from lora_controller.kube.events import EventRecorder
from lora_controller.kube.informer import InformerFactory, SharedInformer
from lora_controller.kube.resources import LORA_ADAPTERS, PODS, SECRETS
from lora_controller.kube.runner import Controller, Result
from lora_controller.kube.status import NotLeader, StatusWriter
from lora_controller.reconcile.discovering import DiscoveryCache, DiscoveryState
from lora_controller.reconcile.executing import Executor, Outcome
from lora_controller.reconcile.observing import Observer
from lora_controller.reconcile.planning import DesiredAdapter, Load, Plan, Unload, plan
from lora_controller.reconcile.pods import TargetPod, selector_matches, target_pod
from lora_controller.reconcile.status import AdapterReport, SourceProblem, compute_status
from lora_controller.reconcile.world import (
    Wanted,
    adapter_memory,
    capacities,
    demands,
    ownership,
)
from lora_controller.scheduler.model import AdapterKey, PodKey, Preemption, Schedule
from lora_controller.scheduler.placing import Scheduler
from lora_controller.sources.errors import SourceError
from lora_controller.sources.model import SourceOptions
from lora_controller.sources.store import AdapterStore
from lora_controller.vllm.client import VllmClient

JSON = dict[str, Any]
log = structlog.get_logger(__name__)

ADAPTERS_BY_PHASE = Gauge("lora_controller_adapters", "Adapters by phase of their LoraAdapter.",
                          ["phase"])
DRIFT_CORRECTIONS = Counter("lora_controller_drift_corrections_total",
                            "Adapters reloaded because a pod lost them (restart, manual unload).")
PREEMPTIONS = Counter("lora_controller_preemptions_total", "Adapter replicas evicted for higher priority.")
POD_SLOTS_USED = Gauge("lora_controller_pod_slots_used", "Adapter slots in use per pod.", ["pod"])
POD_MEMORY_USED = Gauge("lora_controller_pod_memory_used_bytes",
                        "Adapter memory placed per pod.", ["pod"])
MAX_FAILURE_EVENTS = 5
RECONCILE_SECONDS = Histogram("lora_controller_namespace_reconcile_seconds",
                              "Duration of one namespace reconcile.",
                              buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120))


@dataclass
class ControllerConfig:
    adapter_store: Path
    namespaces: list[str] | None = None  # None: every namespace
    workers: int = 4
    resync: float = 300.0
    poll_interval: float = 10.0
    discovery_ttl: float = 300.0
    load_timeout: float = 120.0
    identity: str = "lora-controller"
    requeue_pending: float = 2.0


@dataclass
class NamespaceState:
    """What the controller remembers of a namespace between reconciles (all recomputable)."""

    scheduler: Scheduler = field(default_factory=Scheduler)
    schedule: Schedule | None = None
    wanted: dict[AdapterKey, Wanted] = field(default_factory=dict)
    reports: dict[str, list[AdapterReport]] = field(default_factory=dict)  # cr key -> reports
    last_errors: dict[tuple[str, str], str] = field(default_factory=dict)  # (pod, adapter) -> why
    loaded_once: set[tuple[str, str]] = field(default_factory=set)  # (pod, adapter) seen confirmed
    preempted: dict[AdapterKey, Preemption] = field(default_factory=dict)  # victim -> last eviction
    by_name: dict[str, list[Wanted]] = field(default_factory=dict)  # adapter name -> wanted
    backoff: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (until, delay)


class LoraController:
    def __init__(
        self,
        kube: KubeClient,
        vllm: VllmClient,
        store: AdapterStore,
        config: ControllerConfig,
        *,
        may_write: Callable[[], bool] = lambda: True,
        clock: Clock | None = None,
        source_options: SourceOptions | None = None,
    ) -> None:
        self.kube = kube
        self.vllm = vllm
        self.store = store
        self.config = config
        self.may_write = may_write
        self.clock = clock or RealClock()
        self.factory = InformerFactory(kube, resync_period=config.resync, clock=self.clock)
        self.cr_informers: list[SharedInformer] = []
        self.pod_informers: dict[str, SharedInformer] = {}  # namespace -> its pod informer
        self._pending_pod_informers: dict[str, SharedInformer] = {}  # replacing, not yet synced
        self.secret_informers: dict[str, SharedInformer] = {}  # namespace -> its Secret informer
        self.observer = Observer(vllm, interval=config.poll_interval, clock=self.clock,
                                 on_change=self._on_pod_observed_change)
        self.executor = Executor(vllm, may_act=may_write)
        self.status_writer = StatusWriter(kube, LORA_ADAPTERS, may_write=may_write, clock=self.clock)
        self.events = EventRecorder(kube, instance=config.identity, may_write=may_write,
                                    clock=self.clock)
        self.discovery = DiscoveryCache(secrets=self._secret, ttl=config.discovery_ttl,
                                        options=source_options, clock=self.clock)
        self.runner: Controller[str] = Controller(
            "loraadapter", reconcile=self.reconcile, workers=config.workers, clock=self.clock)
        self.namespaces: dict[str, NamespaceState] = {}
        self._pods: dict[str, TargetPod] = {}  # pod key -> what we know of it
        self._parsed_crs: dict[str, tuple[str, LoraAdapter]] = {}  # key -> (resourceVersion, cr)
        self._tasks: list[asyncio.Task[None]] = []
        self._bg: set[asyncio.Task[None]] = set()

    # -- wiring --------------------------------------------------------------------------------
    async def start(self) -> None:
        namespaces: list[str | None] = [None]
        if self.config.namespaces:
            namespaces = list(self.config.namespaces)
        for ns in namespaces:
            inf = self.factory.informer(LORA_ADAPTERS, namespace=ns)
            inf.add_event_handler(on_add=self._on_cr, on_update=self._on_cr_update,
                                  on_delete=self._on_cr_delete)
            self.cr_informers.append(inf)
            inf.start()
        for inf in self.cr_informers:
            await inf.wait_for_cache_sync(timeout=None)
        self._tasks.append(asyncio.create_task(self.observer.run(), name="observer"))
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop(drain=True, timeout=60)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.factory.stop()
        await self.events.flush()

    def resync_all(self) -> None:
        """Reconcile every namespace now (a new leader takes over)."""
        namespaces = {c.metadata.namespace for c in self.crs()}
        for ns in sorted(namespaces):
            self.runner.enqueue(ns)

    @property
    def synced(self) -> bool:
        return all(i.has_synced() for i in self.factory.informers)

    # -- event handlers: map events to namespaces --------------------------------------------
    def _on_cr(self, obj: JSON) -> None:
        self.runner.enqueue(obj["metadata"]["namespace"])

    def _on_cr_delete(self, obj: JSON) -> None:
        meta = obj["metadata"]
        self._parsed_crs.pop(f"{meta['namespace']}/{meta['name']}", None)
        self._on_cr(obj)

    def _on_cr_update(self, old: JSON, new: JSON) -> None:
        om, nm = old.get("metadata", {}), new.get("metadata", {})
        if (om.get("generation") != nm.get("generation") or om.get("deletionTimestamp")
                != nm.get("deletionTimestamp") or om.get("finalizers") != nm.get("finalizers")
                or old is new):
            self._on_cr(new)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _sync_watches(self, namespace: str, crs: list[LoraAdapter]) -> None:
        """One pod informer per namespace, selecting by the labels every resource of the namespace
        requires (so it holds every pod any selector can match, and few others), and one Secret
        informer per namespace while a resource there references a Secret. One watch each, however
        many resources: HTTP/1.1 watches each hold a connection to the API server."""
        common: dict[str, str] | None = None
        for cr in crs:
            selector = cr.spec.deployment().pod_selector
            labels = dict((selector.match_labels or {}) if selector else {})
            common = labels if common is None else {
                k: v for k, v in common.items() if labels.get(k) == v}
        wanted = ",".join(f"{k}={v}" for k, v in sorted((common or {}).items()))
        current = self.pod_informers.get(namespace)
        pending = self._pending_pod_informers.get(namespace)
        if crs and (current is None or current.label_selector != (wanted or None)) and (
                pending is None or pending.label_selector != (wanted or None)):
            if pending is not None:
                self._background(self.factory.remove(pending))
            inf = self.factory.informer(PODS, namespace=namespace, label_selector=wanted or None)
            inf.add_event_handler(on_add=self._on_pod, on_update=self._on_pod_update,
                                  on_delete=self._on_pod_delete)
            inf.start()
            if current is None:
                self.pod_informers[namespace] = inf
            else:
                self._pending_pod_informers[namespace] = inf
        pending = self._pending_pod_informers.get(namespace)
        if pending is not None and pending.has_synced():
            old = self.pod_informers[namespace]
            self.pod_informers[namespace] = pending
            del self._pending_pod_informers[namespace]
            for key, obj in old.store.items():
                if pending.store.get(key) is None:
                    self._on_pod_delete(obj)
            self._background(self.factory.remove(old))
        needs_secrets = any(cr.spec.credentials_secret_ref is not None for cr in crs)
        sinf = self.secret_informers.get(namespace)
        if needs_secrets and sinf is None:
            sinf = self.factory.informer(SECRETS, namespace=namespace)
            sinf.add_event_handler(on_add=self._on_secret, on_update=lambda _o, n: self._on_secret(n),
                                   on_delete=self._on_secret)
            self.secret_informers[namespace] = sinf
            sinf.start()
        elif not needs_secrets and sinf is not None:
            del self.secret_informers[namespace]
            self._background(self.factory.remove(sinf))

    def _on_pod(self, obj: JSON) -> None:
        pod = target_pod(obj)
        before = self._pods.get(pod.key)
        self._pods[pod.key] = pod
        if pod.served_models and pod.lora_enabled:
            self.observer.track(pod)  # only vLLM servers with LoRA are worth reading
        else:
            self.observer.untrack(pod.key)
        if before is None or before != pod:
            self.runner.enqueue(pod.namespace)

    def _on_pod_update(self, old: JSON, new: JSON) -> None:
        self._on_pod(new)

    def _on_pod_delete(self, obj: JSON) -> None:
        pod = target_pod(obj)
        current = self.pod_informers.get(pod.namespace)
        if current is not None and current.store.get(pod.key) is not None:
            return  # still held by the namespace's current informer (a selector change)
        self._pods.pop(pod.key, None)
        self.observer.untrack(pod.key)
        self.vllm.forget(pod.endpoint) if pod.endpoint else None
        self.runner.enqueue(pod.namespace)

    def _on_secret(self, obj: JSON) -> None:
        self.runner.enqueue(obj["metadata"]["namespace"])

    def _on_pod_observed_change(self, pod_key: str) -> None:
        self.runner.enqueue(pod_key.split("/", 1)[0])

    def _secret(self, namespace: str, name: str) -> JSON | None:
        inf = self.secret_informers.get(namespace)
        return inf.store.get(f"{namespace}/{name}") if inf else None

    # -- reads for the router API -------------------------------------------------------------
    def crs(self, namespace: str | None = None) -> list[LoraAdapter]:
        """The cached resources, parsed once per resourceVersion (treat them as read-only)."""
        out: list[LoraAdapter] = []
        for inf in self.cr_informers:
            objs = inf.store.by_index("namespace", namespace) if namespace else inf.store.list()
            out.extend(self._parsed(o) for o in objs)
        return sorted(out, key=lambda c: c.key)

    def _parsed(self, obj: JSON) -> LoraAdapter:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        version = str(meta.get("resourceVersion", ""))
        hit = self._parsed_crs.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        cr = LoraAdapter.model_validate(obj)
        self._parsed_crs[key] = (version, cr)
        return cr

    def pods(self, namespace: str | None = None) -> list[TargetPod]:
        return sorted((p for p in self._pods.values() if namespace in (None, p.namespace)),
                      key=lambda p: p.key)

    def pod(self, key: str) -> TargetPod | None:
        return self._pods.get(key)

    def wanted(self, namespace: str | None = None) -> list[Wanted]:
        out: list[Wanted] = []
        for ns, state in sorted(self.namespaces.items()):
            if namespace in (None, ns):
                out.extend(state.wanted[k] for k in sorted(state.wanted))
        return out

    def wanted_named(self, name: str, namespace: str | None = None) -> list[Wanted]:
        """The adapters called `name` (in one namespace, or in all), from an index."""
        if namespace is not None:
            state = self.namespaces.get(namespace)
            return list(state.by_name.get(name, ())) if state else []
        return [w for ns in sorted(self.namespaces)
                for w in self.namespaces[ns].by_name.get(name, ())]

    def confirmed_pods(self, wanted: Wanted) -> list[TargetPod]:
        """Pods whose `/v1/models` lists this adapter with the path the controller chose."""
        out = []
        for pod_key in self.observer.pods_listing(wanted.adapter.name):
            pod = self._pods.get(pod_key)
            if pod is None or pod.namespace != wanted.cr.metadata.namespace:
                continue
            obs = self.observer.get(pod_key)
            if obs is not None and obs.ok and obs.adapters.get(wanted.adapter.name) == wanted.path:
                out.append(pod)
        return sorted(out, key=lambda p: p.key)

    def placed_pods(self, wanted: Wanted) -> list[str]:
        state = self.namespaces.get(wanted.cr.metadata.namespace)
        if state is None or state.schedule is None:
            return []
        return list(state.schedule.placement.get(wanted.key, ()))

    def schedule_of(self, namespace: str) -> Schedule | None:
        state = self.namespaces.get(namespace)
        return state.schedule if state else None

    # -- reconcile ----------------------------------------------------------------------------
    async def reconcile(self, namespace: str) -> Result | None:
        started = self.clock.monotonic()
        with RECONCILE_SECONDS.time():
            result = await self._reconcile(namespace)
        _release_freed_memory(self.clock.monotonic())
        log.debug("reconciled", namespace=namespace,
                  seconds=round(self.clock.monotonic() - started, 4),
                  requeue_after=result.requeue_after if result else None)
        return result

    def _namespace_synced(self, namespace: str) -> bool:
        pods = self.pod_informers.get(namespace)
        secrets = self.secret_informers.get(namespace)
        return (pods is None or pods.has_synced()) and (secrets is None or secrets.has_synced())

    async def _reconcile(self, namespace: str) -> Result | None:
        crs = self.crs(namespace)
        self._sync_watches(namespace, [c for c in crs if not c.metadata.deletion_timestamp] or crs)
        if not self._namespace_synced(namespace):
            return Result(requeue_after=0.2)
        state = self.namespaces.setdefault(namespace, NamespaceState())
        pods = self.pods(namespace)
        live = [c for c in crs if not c.metadata.deletion_timestamp]
        deleting = [c for c in crs if c.metadata.deletion_timestamp]
        if self.may_write():
            await self._ensure_finalizers(live)

        # 1. Discover.
        discoveries: dict[str, DiscoveryState] = {}
        sem = asyncio.Semaphore(16)

        async def discover_one(cr: LoraAdapter) -> None:
            async with sem:
                discoveries[cr.key] = await self.discovery.get(cr)

        await asyncio.gather(*(discover_one(cr) for cr in live))

        # 2. What each resource wants, with conflicts between resources resolved (oldest wins).
        wanted, conflicts = self._wanted(live, discoveries)

        # 3. Observed truth, per pod (pods not read yet are read now, not at the next poll);
        #    ownership of what is on the pods.
        unread = [p.key for p in pods if p.usable and self.observer.get(p.key) is None]
        if unread:
            await asyncio.gather(*(self.observer.probe(k) for k in unread))
        own = ownership(crs, store_root=str(self.store.root), namespace=namespace,
                        wanted=list(wanted.values()))
        observed: dict[str, dict[str, str | None]] = {}
        foreign_count: dict[str, int] = {}
        current: dict[AdapterKey, list[PodKey]] = {}
        for pod in pods:
            obs = self.observer.get(pod.key)
            if obs is None or not obs.ok:
                continue
            observed[pod.key] = dict(obs.adapters)
            for name, root in obs.adapters.items():
                owner = own.owner(pod.key, name, root)
                if owner is None:
                    foreign_count[pod.key] = foreign_count.get(pod.key, 0) + 1
                    continue
                key = AdapterKey(namespace, owner.split("/", 1)[-1], name)
                if key in wanted:
                    current.setdefault(key, []).append(PodKey(pod.key))
        if state.schedule is not None:  # keep in-flight placements where they were
            for key, placed in state.schedule.placement.items():
                if key in wanted:
                    cur = current.setdefault(key, [])
                    cur.extend(p for p in placed if p not in cur and p in {x.key for x in pods})

        # 4. Place, every resource of the namespace at once.
        wanted_models = {c.spec.base_model for c in live}
        schedule = state.scheduler.schedule(
            demands(list(wanted.values()), pods),
            capacities(pods, wanted_models=wanted_models, foreign=foreign_count),
            {k: tuple(v) for k, v in current.items()},
        )
        state.schedule = schedule
        state.wanted = wanted
        # Forget what concerned pods that are gone (bounded memory under pod churn).
        alive = {p.key for p in pods}
        state.loaded_once = {k for k in state.loaded_once if k[0] in alive}
        state.last_errors = {k: v for k, v in state.last_errors.items() if k[0] in alive}
        state.backoff = {k: v for k, v in state.backoff.items()
                         if k.split(":", 2)[1] in alive}
        by_name: dict[str, list[Wanted]] = {}
        for w in wanted.values():
            by_name.setdefault(w.adapter.name, []).append(w)
        state.by_name = by_name
        # Remember evictions while their victim stays short, so its status keeps saying why.
        for p in schedule.preemptions:
            state.preempted[p.victim] = p
        for victim, p in list(state.preempted.items()):
            if victim not in wanted or p.by not in wanted or victim not in schedule.unplaced:
                del state.preempted[victim]
        self._record_usage(schedule, wanted, pods)

        # 5. Stage (S3/HuggingFace) what is placed, before anything loads it.
        stage_errors = await self._stage(schedule, wanted, discoveries)

        # 6. Plan against what the pods report.
        desired: dict[str, dict[str, DesiredAdapter]] = {}
        for key, placed in schedule.placement.items():
            w = wanted[key]
            if key in stage_errors:
                continue
            for pod_key in placed:
                desired.setdefault(pod_key, {})[w.adapter.name] = DesiredAdapter(
                    w.adapter.name, w.path, w.cr.key, w.lazy)
        protected = {p.key: frozenset(p.startup_adapters) for p in pods}
        the_plan = plan(desired=desired, observed=observed, managed=own.owner, protected=protected)

        # 7. Execute (leader only), then confirm by re-reading the pods that changed. Actions on a
        #    pod (or for an adapter on a pod) that failed recently wait for their backoff.
        now = self.clock.monotonic()
        runnable = tuple(a for a in the_plan.actions if not self._backing_off(state, a, now))
        waiting = len(the_plan.actions) - len(runnable)
        the_plan = Plan(runnable, the_plan.conflicts)
        outcomes: list[Outcome] = []
        if the_plan.actions and self.may_write():
            # Say Loading before the work, so status is true while it runs.
            await self._write_statuses(namespace, state, live, discoveries, schedule, wanted,
                                       conflicts, the_plan, [], stage_errors, executing=True)
            outcomes = await self._execute(state, the_plan, pods)

        # 8. Status per resource; finalizers of deleted resources.
        pending = await self._write_statuses(namespace, state, live, discoveries, schedule, wanted,
                                             conflicts, the_plan, outcomes, stage_errors)
        if outcomes:
            await self._action_events(namespace, outcomes)
        await self._finish_deletions(deleting, observed, own)
        if self.may_write():
            await self._gc_store(namespace, wanted, deleting)
        if waiting or any(not o.ok for o in outcomes):
            now = self.clock.monotonic()
            next_try = min((until - now for until, _ in state.backoff.values() if until > now),
                           default=self.config.requeue_pending)
            return Result(requeue_after=max(0.05, next_try))
        if pending:
            return Result(requeue_after=self.config.requeue_pending)
        retry = [d.retry_in for d in discoveries.values() if d.problem is not None]
        if retry:
            return Result(requeue_after=min(retry))
        return Result(requeue_after=self.config.resync)

    def _wanted(
        self, live: list[LoraAdapter], discoveries: dict[str, DiscoveryState]
    ) -> tuple[dict[AdapterKey, Wanted], dict[str, list[str]]]:
        """Adapters each live resource selects; a name already served by an older resource of the
        same base model on overlapping pods is a conflict for the newer one."""
        wanted: dict[AdapterKey, Wanted] = {}
        conflicts: dict[str, list[str]] = {}
        claimed: dict[str, LoraAdapter] = {}
        ordered = sorted(live, key=lambda c: (c.metadata.creation_timestamp or "", c.key))
        pods = self.pods(live[0].metadata.namespace) if live else []
        for cr in ordered:
            found = discoveries[cr.key].discovery
            if found is None:
                continue
            for adapter in found.adapters:
                holder = claimed.get(adapter.name)
                if holder is not None and self._overlap(holder, cr, pods):
                    conflicts.setdefault(cr.key, []).append(
                        f"adapter {adapter.name} is already served by LoraAdapter {holder.key} "
                        f"on the same pods; rename it or narrow one podSelector")
                    continue
                claimed.setdefault(adapter.name, cr)
                if adapter.source_type is SourceType.LOCAL:
                    path, staged = adapter.location, True
                else:
                    path = str(self.store.path_for(namespace=cr.metadata.namespace,
                                                   cr=cr.metadata.name, adapter=adapter.name,
                                                   version=adapter.version))
                    staged = False
                w = Wanted(cr, adapter, path, staged)
                wanted[w.key] = w
        return wanted, conflicts

    @staticmethod
    def _overlap(a: LoraAdapter, b: LoraAdapter, pods: list[TargetPod]) -> bool:
        sa, sb = a.spec.deployment().pod_selector, b.spec.deployment().pod_selector
        for p in pods:
            if selector_matches(sa, p.labels) and selector_matches(sb, p.labels) and (
                    p.serves(a.spec.base_model) and p.serves(b.spec.base_model)):
                return True
        # With no pods yet, the same base model is taken as overlapping (stable, no flapping).
        return not pods and a.spec.base_model == b.spec.base_model

    async def _stage(
        self, schedule: Schedule, wanted: dict[AdapterKey, Wanted],
        discoveries: dict[str, DiscoveryState],
    ) -> dict[AdapterKey, str]:
        errors: dict[AdapterKey, str] = {}
        todo = [wanted[k] for k, pods in schedule.placement.items()
                if pods and not wanted[k].staged]
        if not todo or not self.may_write():  # standbys never download
            return errors

        async def one(w: Wanted) -> None:
            try:
                await self.store.stage(w.adapter, namespace=w.cr.metadata.namespace,
                                       cr=w.cr.metadata.name,
                                       credentials=discoveries[w.cr.key].credentials)
            except SourceError as exc:
                errors[w.key] = f"staging failed ({exc.reason}): {exc.message}"

        await asyncio.gather(*(one(w) for w in todo))
        return errors

    async def _execute(
        self, state: NamespaceState, the_plan: Plan, pods: list[TargetPod],
    ) -> list[Outcome]:
        endpoints = {p.key: p.endpoint for p in pods if p.endpoint is not None}
        for action in the_plan.loads:
            if (action.pod, action.name) in state.loaded_once and not action.inplace:
                DRIFT_CORRECTIONS.inc()
        outcomes = await self.executor.execute(list(the_plan.actions), endpoints)
        self._update_backoff(state, outcomes)
        touched = {o.action.pod for o in outcomes}
        await asyncio.gather(*(self.observer.probe(p) for p in touched))
        for o in outcomes:
            key = (o.action.pod, o.action.name)
            if o.ok:
                state.last_errors.pop(key, None)
            else:
                verb = "load" if isinstance(o.action, Load) else "unload"
                state.last_errors[key] = f"{verb} on pod {o.action.pod.split('/', 1)[-1]} failed: {o.message}"
        return outcomes

    @staticmethod
    def _backoff_keys(action: Load | Unload) -> tuple[str, str]:
        return (f"pod:{action.pod}", f"adapter:{action.pod}:{action.name}")

    def _backing_off(self, state: NamespaceState, action: Load | Unload, now: float) -> bool:
        return any(state.backoff.get(k, (0.0, 0.0))[0] > now for k in self._backoff_keys(action))

    def _update_backoff(self, state: NamespaceState, outcomes: list[Outcome]) -> None:
        """Failures back off exponentially (1 s doubling to 60 s): a pod-wide failure (timeout,
        5xx, refused) delays every action on that pod; an adapter's own failure (invalid,
        conflicting name) delays that adapter there only. A success clears both."""
        now = self.clock.monotonic()
        failed: set[str] = set()
        for o in outcomes:
            pod_key, adapter_key = self._backoff_keys(o.action)
            if o.ok:
                state.backoff.pop(adapter_key, None)
            else:
                failed.add(pod_key if o.retryable else adapter_key)
        for o in outcomes:
            pod_key, _ = self._backoff_keys(o.action)
            if o.ok and pod_key not in failed:
                state.backoff.pop(pod_key, None)
        for key in failed:  # once per key and execution, however many actions failed
            _, delay = state.backoff.get(key, (0.0, 0.5))
            delay = min(delay * 2, 60.0)
            state.backoff[key] = (now + delay, delay)

    async def _action_events(self, namespace: str, outcomes: list[Outcome]) -> None:
        """Events of one execution, summarised per resource: one for its loads, one for its
        unloads, and one per distinct failure (at most MAX_FAILURE_EVENTS), so hundreds of
        loads make a handful of API writes."""
        by_owner: dict[str, list[Outcome]] = {}
        for o in outcomes:
            by_owner.setdefault(o.action.owner or "", []).append(o)
        crs = {c.key: c for c in self.crs(namespace)}
        records: list[Coroutine[Any, Any, None]] = []
        for owner, items in sorted(by_owner.items()):
            cr = crs.get(owner)
            if cr is None:
                continue
            regarding = cr.model_dump(mode="json", by_alias=True)
            for kind, verb, reason in ((Load, "loaded", "AdaptersLoaded"),
                                       (Unload, "unloaded", "AdaptersUnloaded")):
                done = [o.action for o in items if o.ok and isinstance(o.action, kind)]
                if done:
                    pods = {a.pod for a in done}
                    listed = ", ".join(f"{a.name} on {a.pod.split('/', 1)[-1]}" for a in done[:20])
                    more = f" and {len(done) - 20} more" if len(done) > 20 else ""
                    records.append(self.events.record(
                        regarding, type="Normal", reason=reason, action=kind.__name__,
                        note=f"{verb} {len(done)} adapter replica(s) on {len(pods)} pod(s): "
                             f"{listed}{more}"))
            failures = [o for o in items if not o.ok]
            for o in failures[:MAX_FAILURE_EVENTS]:
                verb = "load" if isinstance(o.action, Load) else "unload"
                records.append(self.events.record(
                    regarding, type="Warning", reason=f"{verb.capitalize()}Failed",
                    action=verb.capitalize(),
                    note=f"adapter {o.action.name} on pod {o.action.pod.split('/', 1)[-1]}: "
                         f"{o.message}"))
        await asyncio.gather(*records)

    def _record_usage(self, schedule: Schedule, wanted: dict[AdapterKey, Wanted],
                      pods: list[TargetPod]) -> None:
        for pod in pods:
            keys = schedule.get_pod_adapters(PodKey(pod.key))
            POD_SLOTS_USED.labels(pod.key).set(len(keys))
            POD_MEMORY_USED.labels(pod.key).set(
                sum(adapter_memory(wanted[k].cr, wanted[k].adapter) for k in keys if k in wanted))

    async def _write_statuses(
        self, namespace: str, state: NamespaceState, live: list[LoraAdapter],
        discoveries: dict[str, DiscoveryState], schedule: Schedule,
        wanted: dict[AdapterKey, Wanted], conflicts: dict[str, list[str]], the_plan: Plan,
        outcomes: list[Outcome], stage_errors: dict[AdapterKey, str], *, executing: bool = False,
    ) -> bool:
        """Compute and write every resource's status; `executing`: the plan's loads are running."""
        now = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        failed_loads = {(o.action.pod, o.action.name) for o in outcomes if not o.ok}
        planned_loads = {(a.pod, a.name) for a in the_plan.loads}
        any_pending = False
        writes: list[tuple[LoraAdapter, LoraAdapterStatus]] = []
        for p in () if executing else schedule.preemptions:
            PREEMPTIONS.inc()
            victim_cr = next((c for c in live if c.metadata.name == p.victim.cr), None)
            if victim_cr is not None:
                await self.events.record(
                    victim_cr.model_dump(mode="json", by_alias=True), type="Warning",
                    reason="Preempted", action="Schedule",
                    note=f"adapter {p.victim.name} preempted on pod {p.pod.split('/', 1)[-1]} by "
                         f"{p.by.cr_ref} (priority {p.by_priority} > {p.victim_priority})")
        for cr in live:
            disc = discoveries[cr.key]
            reports: list[AdapterReport] = []
            for key, w in sorted(wanted.items()):
                if w.cr.key != cr.key:
                    continue
                placed = tuple(schedule.placement.get(key, ()))
                confirmed = []
                failures: list[str] = []
                for pod_key in placed:
                    obs = self.observer.get(pod_key)
                    if obs is not None and obs.ok and obs.adapters.get(w.adapter.name) == w.path:
                        confirmed.append(pod_key)
                        state.loaded_once.add((pod_key, w.adapter.name))
                        state.last_errors.pop((pod_key, w.adapter.name), None)
                    elif obs is not None and not obs.ok:
                        failures.append(obs.error or "pod unreachable")
                    elif (pod_key, w.adapter.name) in state.last_errors and (
                            (pod_key, w.adapter.name) in failed_loads
                            or (pod_key, w.adapter.name) not in planned_loads):
                        failures.append(state.last_errors[(pod_key, w.adapter.name)])
                    elif obs is not None and w.adapter.name in obs.adapters:
                        failures.append(
                            f"pod {pod_key.split('/', 1)[-1]} already serves an adapter named "
                            f"{w.adapter.name} from {obs.adapters[w.adapter.name]} (not loaded by "
                            f"this controller); it is left alone")
                short = schedule.unplaced.get(key)
                if short is not None:
                    failures.append(short.message)
                    failures.extend(self._unusable_pod_hints(w))
                if key in state.preempted:
                    p = state.preempted[key]
                    failures.append(f"preempted on pod {p.pod.split('/', 1)[-1]} by "
                                    f"{p.by.cr_ref} priority {p.by_priority}")
                if key in stage_errors:
                    failures.append(stage_errors[key])
                wanted_replicas = len(placed) + (short.missing if short else 0)
                reports.append(AdapterReport(
                    name=w.adapter.name, desired_pods=placed, wanted_replicas=wanted_replicas,
                    confirmed_pods=tuple(sorted(confirmed)), failures=sorted(set(failures)),
                    lazy=w.lazy,
                    in_flight=executing and any((p, w.adapter.name) in planned_loads for p in placed)))
            found = disc.discovery
            if found is not None:
                for err in found.errors:
                    reports.append(AdapterReport(name=err.name, failures=[err.message]))
            note = ""
            if found is not None:
                note = f"{len(found.adapters)} adapter(s) selected"
                if found.capped:
                    note += (f" (capped at maxAdapters={cr.spec.adapter_source.max_adapters} of "
                             f"{found.total_found} found)")
            problem = disc.problem
            if found is None and problem is None:
                problem = SourceProblem("DiscoveryPending", "discovery has not completed yet")
            status = compute_status(
                reports=reports, generation=cr.metadata.generation, previous=cr.status, now=now,
                source_problem=problem, discovery_note=note, conflicts=conflicts.get(cr.key, []),
            )
            state.reports[cr.key] = reports
            if status.phase is not None and status.phase.value == "Loading":
                any_pending = True
            writes.append((cr, status))
        sem = asyncio.Semaphore(16)

        async def write_one(cr: LoraAdapter, status: LoraAdapterStatus) -> None:
            async with sem:
                await self._write_status(cr, status)

        await asyncio.gather(*(write_one(cr, st) for cr, st in writes))
        self._phase_metrics()
        return any_pending

    def _unusable_pod_hints(self, w: Wanted) -> list[str]:
        """Why pods that the resource selects, and that serve its base model, take no adapter:
        said once, so a person knows which setting of which pod to fix."""
        hints = []
        selector = w.cr.spec.deployment().pod_selector
        for pod in self.pods(w.cr.metadata.namespace):
            if pod.usable or not pod.serves(w.cr.spec.base_model) or not selector_matches(
                    selector, pod.labels):
                continue
            if pod.problem:
                why = pod.problem
            elif not pod.lora_enabled:
                why = "its vLLM runs without --enable-lora"
            elif not pod.runtime_updates:
                why = "its vLLM container does not set VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
            elif not pod.ready or pod.ip is None:
                why = "it is not Ready"
            else:
                why = "it is being deleted"
            hints.append(f"pod {pod.name} takes no adapter: {why}")
        return hints[:3]

    def _phase_metrics(self) -> None:
        counts: dict[str, int] = {}
        for ns_state in self.namespaces.values():
            for reports in ns_state.reports.values():
                for r in reports:
                    phase = ("Ready" if r.complete else "Loading" if r.pending else
                             "Partial" if r.served else "Failed")
                    counts[phase] = counts.get(phase, 0) + 1
        for phase in ("Ready", "Loading", "Partial", "Failed"):
            ADAPTERS_BY_PHASE.labels(phase).set(counts.get(phase, 0))

    async def _write_status(self, cr: LoraAdapter, status: LoraAdapterStatus) -> None:
        if not self.may_write():
            return
        body = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        current = cr.model_dump(mode="json", by_alias=True, exclude_none=True)
        prev_phase = cr.status.phase if cr.status else None
        try:
            updated = await self.status_writer.write(current, body)
        except NotLeader:
            return
        except ApiError as exc:
            if not exc.not_found:
                log.warning("status write failed", cr=cr.key, error=str(exc)[:300])
            return
        if updated is not None and status.phase != prev_phase and status.phase is not None:
            reg = cr.model_dump(mode="json", by_alias=True)
            if status.phase.value in ("Failed", "Partial"):
                first = status.failed_adapters[0] if status.failed_adapters else None
                cond = next((c for c in status.conditions if c.type == "Ready"), None)
                await self.events.record(
                    reg, type="Warning", reason=status.phase.value, action="Reconcile",
                    note=(f"{first.name}: {first.reason}" if first else
                          (cond.message if cond else status.phase.value)))
            elif status.phase.value == "Ready":
                await self.events.record(reg, type="Normal", reason="Ready", action="Reconcile",
                                         note=f"{status.desired_count} adapter(s) served as desired")

    async def _ensure_finalizers(self, live: list[LoraAdapter]) -> None:
        for cr in live:
            if FINALIZER in cr.metadata.finalizers:
                continue
            patch: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion",
                                            "value": cr.metadata.resource_version}]
            if cr.metadata.finalizers:
                patch.append({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
            else:
                patch.append({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
            try:
                await self.kube.patch(LORA_ADAPTERS, cr.metadata.name, patch,
                                      namespace=cr.metadata.namespace, content_type=JSON_PATCH)
            except ApiError as exc:
                log.debug("finalizer not added yet", cr=cr.key, error=str(exc)[:200])

    async def _finish_deletions(
        self, deleting: list[LoraAdapter], observed: dict[str, dict[str, str | None]], own: Any,
    ) -> None:
        """Drop the finalizer of a deleted resource once none of its adapters is on a pod."""
        for cr in deleting:
            if FINALIZER not in cr.metadata.finalizers or not self.may_write():
                continue
            left = [(pod, name) for pod, adapters in observed.items()
                    for name, root in adapters.items() if own.owner(pod, name, root) == cr.key]
            unobserved = [p for p in self.pods(cr.metadata.namespace)
                          if p.usable and self.observer.get(p.key) is None]
            if left or unobserved:
                continue
            finalizers = [f for f in cr.metadata.finalizers if f != FINALIZER]
            patch: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion",
                 "value": cr.metadata.resource_version},
                {"op": "replace", "path": "/metadata/finalizers", "value": finalizers}]
            try:
                await self.kube.patch(LORA_ADAPTERS, cr.metadata.name, patch,
                                      namespace=cr.metadata.namespace, content_type=JSON_PATCH)
                self.discovery.forget(cr.key)
                log.info("finalizer removed", cr=cr.key)
            except ApiError as exc:
                log.debug("finalizer not removed yet", cr=cr.key, error=str(exc)[:200])

    async def _gc_store(self, namespace: str, wanted: dict[AdapterKey, Wanted],
                        deleting: list[LoraAdapter]) -> None:
        keep = {Path(w.path) for w in wanted.values() if not w.staged or
                w.adapter.source_type is not SourceType.LOCAL}
        # Paths still loaded somewhere are kept too: vLLM may re-read them on a cache miss.
        for pod in self.pods(namespace):
            obs = self.observer.get(pod.key)
            if obs is not None:
                keep.update(Path(r) for r in obs.adapters.values() if r)
        try:
            await self.store.gc(keep=keep, namespace=namespace)
        except (OSError, SourceError) as exc:
            log.debug("adapter store gc failed", error=str(exc)[:200])

    # -- lazy loading (router API) ------------------------------------------------------------
    async def ensure_loaded(self, w: Wanted, *, timeout: float) -> list[TargetPod]:
        """Load a lazy adapter on its placed pods now; returns the pods that confirm it."""
        placed = self.placed_pods(w)
        if not placed:
            return []
        if not w.staged and w.adapter.source_type is not SourceType.LOCAL:
            disc = self.discovery.peek(w.cr.key)
            await self.store.stage(w.adapter, namespace=w.cr.metadata.namespace,
                                   cr=w.cr.metadata.name,
                                   credentials=disc.credentials if disc else None)
        todo = [Load(p, w.adapter.name, w.path, w.cr.key) for p in placed
                if (obs := self.observer.get(p)) is None or obs.adapters.get(w.adapter.name) != w.path]
        if todo:
            endpoints = {p.key: p.endpoint for p in self.pods(w.cr.metadata.namespace)
                         if p.endpoint is not None}
            async with asyncio.timeout(timeout):
                await self.executor.execute(todo, endpoints)
                await asyncio.gather(*(self.observer.probe(a.pod) for a in todo))
            self.runner.enqueue(w.cr.metadata.namespace)
        return self.confirmed_pods(w)


_last_trim = [0.0]


def _release_freed_memory(now: float, *, every: float = 10.0) -> None:
    """Hand memory freed after a big reconcile back to the OS (glibc keeps it otherwise, and the
    resident size stays at the peak of the largest reconcile). At most every `every` seconds."""
    if now - _last_trim[0] < every:
        return
    _last_trim[0] = now
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass

