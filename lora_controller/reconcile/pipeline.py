"""One reconcile of one namespace, top to bottom.

    snapshot  the namespace's resources, pods and pod reports, read once from the caches
    discover  what each resource's source offers (cached; a failure is that resource's alone)
    select    which adapters each resource gets, name conflicts settled (oldest wins)
    place     where each adapter should be (the scheduler, the whole namespace at once)
    stage     remote adapters' files into the adapter store, for placed adapters only
    plan      loads and unloads that make the pods' reports match the placement (pure)
    execute   the plan, less what backs off (leader only; status says Loading if it takes a while)
    confirm   the touched pods read again: only a pod's `/v1/models` confirms anything
    report    statuses, Events, metrics; lazy-load requests answered
    finish    finalizers of deleted resources, the adapter store's garbage

Every side effect goes through the round's `Writer` (nothing, on a standby). The reconcile is
level-based: it reads the world and acts on it, whatever event caused it, and it is the namespace's
only writer (the work queue never runs one key twice at once, and lazy loads go through it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from lora_controller.api.types import LoraAdapter, SourceType
from lora_controller.core.clock import Clock
from lora_controller.kube.runner import Result
from lora_controller.reconcile.confirming import confirm
from lora_controller.reconcile.demand import DemandSignals, in_use, short_of_slots
from lora_controller.reconcile.discovering import DiscoveryCache, DiscoveryState, discover_all
from lora_controller.reconcile.dryrun import DryRun, dry_run
from lora_controller.reconcile.executing import Outcome
from lora_controller.reconcile.finalizing import collect_store, ensure_finalizers, finish_deletions
from lora_controller.reconcile.lazy import LazyLoads, Verdict
from lora_controller.reconcile.ledger import Ledger, after_round, read_ledger
from lora_controller.reconcile.metrics import DRIFT_CORRECTIONS, observe_phases, observe_pod_usage
from lora_controller.reconcile.observing import Usage
from lora_controller.reconcile.placement import Demand, current_placement, desired_adapters, place
from lora_controller.reconcile.planning import Load, Plan, bounded, plan
from lora_controller.reconcile.refs import CrRef, PodRef
from lora_controller.reconcile.reporting import Reporter, Round, record_confirmations
from lora_controller.reconcile.snapshot import (
    NamespaceCache,
    NamespaceSnapshot,
    PodReports,
    take_snapshot,
)
from lora_controller.reconcile.staging import stage_placed
from lora_controller.reconcile.state import NamespaceState
from lora_controller.reconcile.wanting import select
from lora_controller.reconcile.world import Wanted, ownership
from lora_controller.reconcile.writer import Writer, Writers
from lora_controller.scheduler.model import AdapterKey
from lora_controller.scheduler.scaling import DEFAULT_SCALE_DOWN_DELAY, ReplicaPlanner
from lora_controller.sources.model import DiscoveredAdapter
from lora_controller.sources.store import AdapterStore

QUIET_AFTER = 60.0
"""Seconds without a router report after which router lookups count as demand again."""
DEMAND_RECHECK = 15.0
"""Seconds between reconciles of a namespace with demand-scaled adapters, events or not."""
PENDING_AFTER = 1.0
"""A new resource whose discovery takes longer than this is shown as Pending meanwhile."""
LOADING_AFTER = 1.0
"""Actions still running after this long are shown as Loading meanwhile; faster ones go straight
to their outcome (one status write instead of two, and none before the first load starts)."""


class Observing(PodReports, Protocol):
    """What the pipeline needs of the observer: pod reports, and adapter use where wanted."""

    usage_namespaces: set[str]

    def usage(self, pod_key: PodRef) -> Usage | None: ...


class Watches(Protocol):
    """The per-namespace watches (watches.py): made to fit the resources, synced or not."""

    def sync(self, namespace: str, crs: Sequence[LoraAdapter]) -> None: ...

    def synced(self, namespace: str) -> bool: ...


@dataclass(frozen=True)
class Timing:
    requeue_pending: float = 2.0  # while loads are in flight
    resync: float = 300.0  # when nothing is pending
    action_wait: float = 10.0  # a reconcile waits this long for its loads, then moves on


class NamespaceReconciler:
    def __init__(self, *, cache: NamespaceCache, watches: Watches, observer: Observing,
                 discovery: DiscoveryCache, store: AdapterStore, writers: Writers,
                 lazy: LazyLoads, clock: Clock, timing: Timing | None = None,
                 signals: DemandSignals | None = None,
                 wake: Callable[[str], None] = lambda _namespace: None,
                 scale_down_delay: float = DEFAULT_SCALE_DOWN_DELAY) -> None:
        self.cache = cache
        self.watches = watches
        self.observer = observer
        self.discovery = discovery
        self.store = store
        self.writers = writers
        self.lazy = lazy
        self.signals = signals or DemandSignals()
        self.wake = wake  # enqueue a namespace (new demand)
        self.clock = clock
        self.timing = timing or Timing()
        self.reporter = Reporter()
        self.scale_down_delay = scale_down_delay
        self.states: dict[str, NamespaceState] = {}

    async def reconcile(self, namespace: str) -> Result:
        crs = self.cache.crs(namespace)
        self.watches.sync(namespace, [c for c in crs if not c.metadata.deletion_timestamp] or crs)
        if not self.watches.synced(namespace):
            return Result(requeue_after=0.2)
        writer = self.writers.current()
        state = self.states.get(namespace) or self.states.setdefault(
            namespace, NamespaceState(planner=ReplicaPlanner(self.scale_down_delay)))
        snapshot = await take_snapshot(self.cache, self.observer, namespace)
        finalizers = asyncio.ensure_future(ensure_finalizers(writer, snapshot.live))
        try:  # beside discovery and placement; done before anything is loaded
            r = await self._decide(writer, state, snapshot)
        finally:
            await finalizers
        r, waiting = await self._execute(writer, state, r)
        pending = await self._report(writer, state, r)
        await self._record_ownership(writer, state, r)
        await finish_deletions(writer, r.snapshot, r.own, self.discovery)
        await collect_store(writer, namespace, r.selection.wanted, r.snapshot)
        return self._next(state, r, waiting=waiting, pending=pending)

    @staticmethod
    async def _record_ownership(writer: Writer, state: NamespaceState, r: Round) -> None:
        ledger = after_round(state.ledger or Ledger(), r.snapshot, r.own)
        if writer.acts and ledger != state.ledger:
            await writer.save_ledger(r.snapshot.namespace, ledger)
            state.ledger = ledger

    async def _discover(self, writer: Writer,
                        snapshot: NamespaceSnapshot) -> dict[CrRef, DiscoveryState]:
        """Discover every live resource; say Pending for new ones if their source is slow."""
        task = asyncio.ensure_future(discover_all(self.discovery, snapshot.live))
        try:
            done, _ = await asyncio.wait({task}, timeout=PENDING_AFTER)
            if not done:  # new resources whose remote source has not answered yet
                new = [c for c in snapshot.live if c.status is None
                       and c.spec.adapter_source.type is not SourceType.LOCAL
                       and self.discovery.peek(CrRef.of(c)) is None]
                await self.reporter.pending(writer, new, self.clock.now())
            return await task
        finally:
            task.cancel()

    async def _decide(self, writer: Writer, state: NamespaceState,
                      snapshot: NamespaceSnapshot) -> Round:
        """Discover, select, place, stage and plan."""
        discoveries = await self._discover(writer, snapshot)
        selection = select(snapshot.live, {ref: d.discovery for ref, d in discoveries.items()},
                           snapshot.pods, self._store_path)
        if state.ledger is None or (writer.acts and not state.ledger_read_acting):
            state.ledger = await read_ledger(self.store.root, snapshot.namespace)
            state.ledger_read_acting = writer.acts
        own = ownership(snapshot.crs, store_root=str(self.store.root),
                        namespace=snapshot.namespace, wanted=list(selection.wanted.values()),
                        ledger=state.ledger.entries)
        current = current_placement(snapshot, own, selection.wanted, state.schedule)
        schedule = place(state, snapshot, selection.wanted, current,
                         self._demand(snapshot, selection.wanted))
        for key, scaled in state.scaled.items():
            if scaled.replicas == 0:  # scaled to zero: loaded again on the next ask
                self.lazy.deactivate(key)
        state.selection, state.by_name = selection, selection.by_name()
        state.forget_pods({p.name for p in snapshot.pods})
        observe_pod_usage(schedule, selection.wanted, snapshot.pods)
        stage_errors = await stage_placed(writer, schedule, selection.wanted, discoveries)
        desired = desired_adapters(schedule, selection.wanted, skip=stage_errors,
                                   active=self.lazy.active(snapshot.namespace))
        the_plan = plan(desired=desired, observed=snapshot.readable, managed=own.owner,
                        protected={p.ref: frozenset(p.startup_adapters) for p in snapshot.pods})
        return Round(snapshot=snapshot, discoveries=discoveries, selection=selection,
                     schedule=schedule, stage_errors=stage_errors, plan=the_plan, own=own)

    async def dry_run(self, namespace: str, changes: Sequence[LoraAdapter]) -> DryRun:
        """What applying `changes` to `namespace` would do (dryrun.py); nothing is written."""
        state = self.states.get(namespace) or NamespaceState()
        snapshot = await take_snapshot(self.cache, self.observer, namespace)
        if state.ledger is None:
            state.ledger = await read_ledger(self.store.root, namespace)
        return await dry_run(snapshot, changes, discovery=self.discovery,
                             store_root=str(self.store.root), store_path=self._store_path,
                             previous=state.schedule, ledger=state.ledger, scaled=state.scaled)

    def _store_path(self, cr: LoraAdapter, adapter: DiscoveredAdapter) -> str:
        return str(self.store.path_for(namespace=cr.metadata.namespace, cr=cr.metadata.name,
                                       adapter=adapter.name, version=adapter.version))

    def _demand(self, snapshot: NamespaceSnapshot, wanted: Mapping[AdapterKey, Wanted]) -> Demand:
        """The signals of the namespace's demand-scaled adapters (none: nothing to read)."""
        ns = snapshot.namespace
        keys = {k for k, w in wanted.items() if w.cr.spec.deployment().demand_scaled()}
        self.signals.forget_except(ns, keys)
        if not keys:
            self.observer.usage_namespaces.discard(ns)
            return Demand()
        self.observer.usage_namespaces.add(ns)  # read the pods' /metrics from now on
        usage = [u for p in snapshot.pods if (u := self.observer.usage(p.ref)) is not None]
        now = self.clock.monotonic()
        rates = self.signals.rates(keys, now=now, quiet_after=QUIET_AFTER)
        self.signals.export(rates)
        return Demand(rates=rates, short_of_slots=frozenset(short_of_slots(usage)),
                      in_use=frozenset(in_use(usage)),
                      asked=frozenset(self.lazy.pending(ns)) & keys, now=now)

    async def _execute(self, writer: Writer, state: NamespaceState,
                       r: Round) -> tuple[Round, int]:
        """Run what may run now: not what is in flight, not what backs off, at most
        `MAX_ACTIONS_PER_POD` per pod; then confirm it on the pods. Returns how many wait."""
        in_flight = writer.in_flight(r.snapshot.namespace)
        actions = [a for a in r.plan.actions if (a.pod.name, a.name) not in in_flight]
        allowed = bounded(actions)
        runnable, waiting = state.backoff.split(allowed, self.clock.monotonic())
        waiting += len(actions) - len(allowed)
        r = replace(r, plan=Plan(runnable, r.plan.conflicts), in_flight=in_flight)
        earlier = writer.collect(r.snapshot.namespace)
        if not earlier and not (runnable and writer.acts):
            return r, waiting
        endpoints = {p.ref: p.endpoint for p in r.snapshot.pods if p.endpoint is not None}
        execution = asyncio.ensure_future(
            writer.execute(runnable, endpoints, wait=self.timing.action_wait))
        if runnable:
            for action in r.plan.loads:
                if (action.pod.name, action.name) in state.loaded_once and not action.inplace:
                    DRIFT_CORRECTIONS.inc()
            done, _ = await asyncio.wait({execution}, timeout=LOADING_AFTER)
            if not done:  # the loads take a while: status says Loading meanwhile
                await self.reporter.statuses(writer, state, replace(r, executing=True),
                                             self.clock.now())
        outcomes = earlier + await execution
        snapshot, outcomes = await confirm(self.observer, r.snapshot, outcomes)
        self._learn(state, outcomes)
        return replace(r, snapshot=snapshot, outcomes=tuple(outcomes),
                       in_flight=writer.in_flight(r.snapshot.namespace)), waiting

    def _learn(self, state: NamespaceState, outcomes: Sequence[Outcome]) -> None:
        """Failures back off and are remembered for status; successes clear both."""
        state.backoff.record(outcomes, self.clock.monotonic())
        for o in outcomes:
            key = (o.action.pod.name, o.action.name)
            if o.ok:
                state.last_errors.pop(key, None)
            else:
                verb = "load" if isinstance(o.action, Load) else "unload"
                state.last_errors[key] = f"{verb} on pod {o.action.pod.name} failed: {o.message}"

    async def _report(self, writer: Writer, state: NamespaceState, r: Round) -> bool:
        """Statuses, Events and metrics; answer lazy-load requests. True: work is pending."""
        record_confirmations(state, r)
        told: set[CrRef] = set()  # resources whose Ready Event told this round's loads
        pending = await self.reporter.statuses(writer, state, r, self.clock.now(), told)
        if r.outcomes:
            await self.reporter.actions(writer, r, told)
        await self.reporter.preemptions(writer, r)
        observe_phases(reports for s in self.states.values() for reports in s.reports.values())
        self.lazy.settle(r.snapshot.namespace, r.selection.wanted, lazy_verdict(r, state))
        return pending

    def _next(self, state: NamespaceState, r: Round, *, waiting: int, pending: bool) -> Result:
        if waiting or r.in_flight or any(not o.ok for o in r.outcomes):
            next_try = state.backoff.next_in(self.clock.monotonic())
            return Result(requeue_after=max(0.05, next_try or self.timing.requeue_pending))
        if pending or self.lazy.pending(r.snapshot.namespace):
            return Result(requeue_after=self.timing.requeue_pending)
        later = [d.retry_in for d in r.discoveries.values() if d.problem is not None]
        if state.scaled:  # demand changes without events: look again soon (no write if steady)
            later.append(DEMAND_RECHECK)
        return Result(requeue_after=min([*later, self.timing.resync]))


def lazy_verdict(r: Round, state: NamespaceState) -> Verdict:
    """How a lazy-load request stands after this round (see `LazyLoads.settle`)."""

    def verdict(key: AdapterKey) -> str | None:
        w = r.selection.wanted[key]
        placed = r.schedule.placement.get(key, ())
        if any(r.confirmed(w, p) for p in placed):
            return ""
        if not placed:
            short = r.schedule.unplaced.get(w.key)
            return f"adapter {w.adapter.name} has no pod: " + (
                short.message if short else "nothing could be placed")
        if w.key in r.stage_errors:
            return r.stage_errors[w.key]
        errors = [state.last_errors.get((p, w.adapter.name)) for p in placed]
        if all(errors):
            return "; ".join(sorted({e for e in errors if e}))
        return None

    return verdict
