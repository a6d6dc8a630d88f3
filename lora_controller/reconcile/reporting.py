"""The report stage: every resource's status, its Events and the metrics, from what pods confirm.

Statuses are computed here (pure, from the round's inputs) and written through the writer, only
when they changed. Events tell what happened: loads and unloads summarised per resource (one Event
for hundreds of loads), each distinct failure (at most `MAX_FAILURE_EVENTS` per execution),
evictions, and phase transitions (Ready, Partial, Failed). A status is also written before the
work of an execution that takes a while (`executing`): it says Loading while the loads run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from lora_controller.api.types import LoraAdapter, LoraAdapterStatus, Phase
from lora_controller.reconcile.discovering import DiscoveryState
from lora_controller.reconcile.executing import Outcome
from lora_controller.reconcile.metrics import PREEMPTIONS
from lora_controller.reconcile.planning import Action, Load, Plan, Unload
from lora_controller.reconcile.pods import selector_matches
from lora_controller.reconcile.refs import CrRef
from lora_controller.reconcile.snapshot import NamespaceSnapshot
from lora_controller.reconcile.state import NamespaceState
from lora_controller.reconcile.status import AdapterReport, compute_status
from lora_controller.reconcile.wanting import Selection
from lora_controller.reconcile.world import Ownership, Wanted
from lora_controller.reconcile.writer import Writer
from lora_controller.scheduler.model import AdapterKey, Schedule

MAX_FAILURE_EVENTS = 5
MAX_HINTS = 3


@dataclass(frozen=True)
class Round:
    """What one reconcile found and decided, as the report stage reads it."""

    snapshot: NamespaceSnapshot
    discoveries: Mapping[CrRef, DiscoveryState]
    selection: Selection
    schedule: Schedule
    stage_errors: Mapping[AdapterKey, str]
    plan: Plan
    own: Ownership
    outcomes: Sequence[Outcome] = ()
    executing: bool = False  # the plan's actions are running now
    in_flight: frozenset[tuple[str, str]] = frozenset()  # (pod, adapter) still running

    @cached_property
    def planned_loads(self) -> frozenset[tuple[str, str]]:
        """(pod name, adapter) of every load the plan holds."""
        return frozenset((a.pod.name, a.name) for a in self.plan.loads)

    @cached_property
    def failed_actions(self) -> frozenset[tuple[str, str]]:
        """(pod name, adapter) of every action that failed in this round."""
        return frozenset((o.action.pod.name, o.action.name) for o in self.outcomes if not o.ok)

    def confirmed(self, w: Wanted, pod: str) -> bool:
        obs = self.snapshot.observed(pod)
        return obs is not None and obs.ok and obs.adapters.get(w.adapter.name) == w.path


def record_confirmations(state: NamespaceState, r: Round) -> None:
    """Remember which replicas pods confirmed (a later loss is drift) and clear their errors."""
    for key, placed in r.schedule.placement.items():
        w = r.selection.wanted.get(key)
        if w is None:
            continue
        for pod in placed:
            if r.confirmed(w, pod):
                state.loaded_once.add((pod, w.adapter.name))
                state.last_errors.pop((pod, w.adapter.name), None)


def _replica_failure(w: Wanted, pod: str, r: Round, state: NamespaceState) -> str | None:
    """Why a placed replica is not confirmed, when something says why."""
    obs = r.snapshot.observed(pod)
    if obs is not None and not obs.ok:
        return obs.error or "pod unreachable"
    key = (pod, w.adapter.name)
    if key in state.last_errors and (key in r.failed_actions or key not in r.planned_loads):
        return state.last_errors[key]
    if obs is not None and w.adapter.name in obs.adapters:
        return (f"pod {pod} already serves an adapter named {w.adapter.name} from "
                f"{obs.adapters[w.adapter.name]} (not loaded by this controller); it is left alone")
    return None


def unusable_pod_hints(w: Wanted, snapshot: NamespaceSnapshot) -> list[str]:
    """Why pods that the resource selects, and that serve its base model, take no adapter: said
    once, so a person knows which setting of which pod to fix."""
    selector = w.cr.spec.deployment().pod_selector
    hints = []
    for pod in snapshot.pods:
        why = pod.unusable_reason
        if why and pod.serves(w.cr.spec.base_model) and selector_matches(selector, pod.labels):
            hints.append(f"pod {pod.name} takes no adapter: {why}")
    return hints[:MAX_HINTS]


def adapter_report(w: Wanted, r: Round, state: NamespaceState) -> AdapterReport:
    placed = tuple(r.schedule.placement.get(w.key, ()))
    confirmed = tuple(sorted(p for p in placed if r.confirmed(w, p)))
    failures = [f for p in placed if p not in confirmed
                if (f := _replica_failure(w, p, r, state)) is not None]
    short = r.schedule.unplaced.get(w.key)
    if short is not None:
        failures.append(short.message)
        failures.extend(unusable_pod_hints(w, r.snapshot))
    evicted = state.preempted.get(w.key)
    if evicted is not None:
        failures.append(f"preempted on pod {evicted.pod} by {evicted.by.cr_ref} "
                        f"priority {evicted.by_priority}")
    if w.key in r.stage_errors:
        failures.append(r.stage_errors[w.key])
    in_flight = any((p, w.adapter.name) in r.in_flight
                    or (r.executing and (p, w.adapter.name) in r.planned_loads) for p in placed)
    return AdapterReport(name=w.adapter.name, desired_pods=placed,
                         wanted_replicas=len(placed) + (short.missing if short else 0),
                         confirmed_pods=confirmed, failures=sorted(set(failures)), lazy=w.lazy,
                         in_flight=in_flight)


def resource_status(cr: LoraAdapter, wanted: Sequence[Wanted], r: Round, state: NamespaceState,
                    now: str) -> tuple[LoraAdapterStatus, list[AdapterReport]]:
    reports = [adapter_report(w, r, state) for w in wanted]
    disc = r.discoveries.get(CrRef.of(cr))
    found = disc.discovery if disc else None
    problem = disc.problem if disc else None
    note = ""
    if found is not None:
        reports.extend(AdapterReport(name=e.name, failures=[e.message]) for e in found.errors)
        note = f"{len(found.adapters)} adapter(s) selected"
        if found.capped:
            note += (f" (capped at maxAdapters={cr.spec.adapter_source.max_adapters} of "
                     f"{found.total_found} found)")
        if found.notes:  # what the source holds that is not offered (links, special files)
            note += "; " + "; ".join(found.notes)
    status = compute_status(reports=reports, generation=cr.metadata.generation, previous=cr.status,
                            now=now, source_problem=problem, discovery_note=note,
                            conflicts=r.selection.conflicts.get(CrRef.of(cr), []),
                            discovered=found is not None,
                            scaling_note=scaling_note(cr, wanted, state))
    return status, reports


def scaling_note(cr: LoraAdapter, wanted: Sequence[Wanted], state: NamespaceState) -> str:
    """For a demand-scaled resource: each adapter's replica count (not its rate, which changes
    all the time: status must not be rewritten for it; the router API has the rates)."""
    if not cr.spec.deployment().demand_scaled():
        return ""
    counts = [(w.adapter.name, s.replicas) for w in wanted if (s := state.scaled.get(w.key))]
    listed = ", ".join(f"{name}: {n}" for name, n in sorted(counts, key=lambda c: (-c[1], c[0]))[:20])
    more = f" and {len(counts) - 20} more" if len(counts) > 20 else ""
    return (f"replicas follow demand ({len(counts)} adapter(s)): {listed}{more}; rates and "
            f"reasons: GET /v1/loraadapters/{cr.metadata.namespace}/{cr.metadata.name}")


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


class Reporter:
    """Writes statuses and Events through the round's writer; keeps the reports for metrics."""

    def __init__(self, *, concurrency: int = 16) -> None:
        self.concurrency = concurrency

    async def statuses(self, writer: Writer, state: NamespaceState, r: Round,
                       now: datetime, told: set[CrRef] | None = None) -> bool:
        """Compute and write every live resource's status; True when work is still pending.

        A resource that becomes Ready through this round's loads gets one Event saying both (its
        ref is added to `told`, so that `actions` does not tell the loads again): one request
        instead of two per new resource."""
        by_cr: dict[CrRef, list[Wanted]] = {}
        for key in sorted(r.selection.wanted):
            w = r.selection.wanted[key]
            by_cr.setdefault(w.ref, []).append(w)
        writes: list[tuple[LoraAdapter, LoraAdapterStatus]] = []
        pending = False
        for cr in r.snapshot.live:
            status, reports = resource_status(cr, by_cr.get(CrRef.of(cr), []), r, state,
                                              _timestamp(now))
            state.reports[CrRef.of(cr)] = reports
            pending = pending or status.phase in (Phase.LOADING, Phase.PENDING)
            writes.append((cr, status))
        sem = asyncio.Semaphore(self.concurrency)

        async def write(cr: LoraAdapter, status: LoraAdapterStatus) -> None:
            async with sem:
                if await writer.write_status(cr, status):
                    loads = loaded.get(CrRef.of(cr))
                    if await self._phase_event(writer, cr, status, loads) and loads:
                        told_here.add(CrRef.of(cr))

        told_here = told if told is not None else set()
        loaded = _loads_by_owner(r.outcomes) if told is not None else {}

        await asyncio.gather(*(write(cr, st) for cr, st in writes))
        alive = {CrRef.of(c) for c in r.snapshot.live}
        for gone in [ref for ref in state.reports if ref not in alive]:
            del state.reports[gone]
        return pending

    async def pending(self, writer: Writer, crs: Sequence[LoraAdapter], now: datetime) -> None:
        """Say Pending (accepted, nothing discovered yet) on new resources."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(cr: LoraAdapter) -> None:
            async with sem:
                await writer.write_status(cr, compute_status(
                    reports=[], generation=cr.metadata.generation, previous=None,
                    now=_timestamp(now), discovered=False))

        await asyncio.gather(*(one(cr) for cr in crs))

    @staticmethod
    async def _phase_event(writer: Writer, cr: LoraAdapter, status: LoraAdapterStatus,
                           loads: Sequence[Action] | None = None) -> bool:
        """The Event of a phase change, if any; True when it was a Ready one (telling `loads`)."""
        before = cr.status.phase if cr.status else None
        if status.phase is None or status.phase == before:
            return False
        if status.phase in (Phase.FAILED, Phase.PARTIAL):
            first = status.failed_adapters[0] if status.failed_adapters else None
            cond = next((c for c in status.conditions if c.type == "Ready"), None)
            note = (f"{first.name}: {first.reason}" if first else
                    cond.message if cond else status.phase.value)
            await writer.record_event(cr, type="Warning", reason=status.phase.value,
                                      action="Reconcile", note=note)
            return False
        if status.phase is Phase.READY:
            note = f"{status.desired_count} adapter(s) served as desired"
            if loads:
                note += "; " + _summary(loads, "loaded")
            await writer.record_event(cr, type="Normal", reason="Ready", action="Reconcile",
                                      note=note)
            return True
        return False

    async def preemptions(self, writer: Writer, r: Round) -> None:
        live = {CrRef.of(c): c for c in r.snapshot.live}
        for p in r.schedule.preemptions:
            PREEMPTIONS.inc()
            victim = live.get(CrRef(p.victim.namespace, p.victim.cr))
            if victim is not None:
                await writer.record_event(
                    victim, type="Warning", reason="Preempted", action="Schedule",
                    note=f"adapter {p.victim.name} preempted on pod {p.pod} by {p.by.cr_ref} "
                         f"(priority {p.by_priority} > {p.victim_priority})")

    async def actions(self, writer: Writer, r: Round, told: set[CrRef] | None = None) -> None:
        """Events of one execution, summarised per resource (loads already told by a Ready
        Event of this round, `told`, are not told again)."""
        by_owner: dict[CrRef, list[Outcome]] = {}
        for o in r.outcomes:
            if o.action.owner is not None:
                by_owner.setdefault(o.action.owner, []).append(o)
        crs = {CrRef.of(c): c for c in r.snapshot.crs}
        await asyncio.gather(*(self._owner_events(writer, crs[owner], items,
                                                  loads_told=owner in (told or ()))
                               for owner, items in sorted(by_owner.items()) if owner in crs))

    @staticmethod
    async def _owner_events(writer: Writer, cr: LoraAdapter, items: list[Outcome], *,
                            loads_told: bool = False) -> None:
        for kind, verb, reason in ((Load, "loaded", "AdaptersLoaded"),
                                   (Unload, "unloaded", "AdaptersUnloaded")):
            done = [o.action for o in items if o.ok and isinstance(o.action, kind)]
            if done and not (kind is Load and loads_told):
                await writer.record_event(cr, type="Normal", reason=reason,
                                          action=kind.__name__, note=_summary(done, verb))
        for o in [o for o in items if not o.ok][:MAX_FAILURE_EVENTS]:
            verb = "Load" if isinstance(o.action, Load) else "Unload"
            await writer.record_event(
                cr, type="Warning", reason=f"{verb}Failed", action=verb,
                note=f"adapter {o.action.name} on pod {o.action.pod.name}: {o.message}")


def _loads_by_owner(outcomes: Sequence[Outcome]) -> dict[CrRef, list[Action]]:
    """The round's successful loads, by the resource they were for."""
    out: dict[CrRef, list[Action]] = {}
    for o in outcomes:
        if o.ok and isinstance(o.action, Load) and o.action.owner is not None:
            out.setdefault(o.action.owner, []).append(o.action)
    return out


def _summary(done: Sequence[Action], verb: str) -> str:
    """'loaded 12 adapter replica(s) on 6 pod(s): a on p1, ...' (at most 20 listed)."""
    listed = ", ".join(f"{a.name} on {a.pod.name}" for a in done[:20])
    more = f" and {len(done) - 20} more" if len(done) > 20 else ""
    return f"{verb} {len(done)} adapter replica(s) on {len({a.pod for a in done})} pod(s): {listed}{more}"
