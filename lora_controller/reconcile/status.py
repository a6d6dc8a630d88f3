"""A LoraAdapter's status, computed from what the pods confirm (pure).

Nothing here trusts intent: an adapter counts as loaded on a pod only when that pod's `/v1/models`
lists it with the path the controller chose. The phase ladder lives here, once, for an adapter
(`adapter_phase`) and for a resource (`resource_phase`):
- `Pending` while nothing is discovered yet and nothing failed (a new resource, a slow source);
- `Loading` while any desired replica is neither confirmed nor failed (work in flight);
- `Ready` when every adapter has every desired replica confirmed (lazy adapters: placed and staged);
- `Partial` when some adapters (or replicas) are served and some failed;
- `Failed` when none could be (including a source that cannot be read or matches nothing).

Counts and lists agree: `loadedCount` is the number of adapters in `loadedAdapters` and
`failedCount` of those in `failedAdapters`; lists are bounded (`MAX_LIST` entries) so a resource
with thousands of adapters stays far from etcd's object size limit, counts stay exact and
`truncated` says when lists were cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lora_controller.api.types import (
    Condition,
    FailedAdapter,
    LoraAdapterStatus,
    Phase,
    PodAssignment,
)

MAX_LIST = 100
MAX_MESSAGE = 1024


@dataclass(slots=True)
class AdapterReport:
    """Everything known about one adapter of one LoraAdapter, for its status (pods by name; one
    per adapter of the fleet: slots, no instance dictionary)."""

    name: str
    desired_pods: tuple[str, ...] = ()
    wanted_replicas: int = 0
    confirmed_pods: tuple[str, ...] = ()
    failures: list[str] = field(default_factory=list)
    lazy: bool = False
    in_flight: bool = False

    @property
    def complete(self) -> bool:
        if self.failures:
            return False
        if self.lazy:
            return len(self.desired_pods) >= self.wanted_replicas
        return self.wanted_replicas > 0 and set(self.desired_pods) <= set(self.confirmed_pods) \
            and len(self.confirmed_pods) >= self.wanted_replicas

    @property
    def pending(self) -> bool:
        """Desired replicas not yet confirmed and not failed: work in flight."""
        if self.in_flight:
            return True
        if self.lazy:
            return False
        unconfirmed = set(self.desired_pods) - set(self.confirmed_pods)
        return bool(unconfirmed) and not self.failures

    @property
    def served(self) -> bool:
        return bool(self.confirmed_pods) or (self.lazy and bool(self.desired_pods))


@dataclass(frozen=True)
class SourceProblem:
    """Discovery failed for the whole source."""

    reason: str  # CamelCase, e.g. SourceNotFound
    message: str


def adapter_phase(report: AdapterReport) -> Phase:
    if report.pending:  # an in-place reload of a complete adapter is work in flight too
        return Phase.LOADING
    if report.complete:
        return Phase.READY
    return Phase.PARTIAL if report.served else Phase.FAILED


def resource_phase(reports: Sequence[AdapterReport], problem: SourceProblem | None, *,
                   discovered: bool) -> Phase:
    if not reports:
        return Phase.PENDING if not discovered and problem is None else Phase.FAILED
    phases = [adapter_phase(r) for r in reports]
    if Phase.LOADING in phases:
        return Phase.LOADING
    if all(p is Phase.READY for p in phases) and problem is None:
        return Phase.READY
    return Phase.PARTIAL if any(r.served for r in reports) else Phase.FAILED


def _cap(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _condition(previous: Sequence[Condition], *, type: str, status: str, reason: str, message: str,
               generation: int | None, now: str) -> Condition:
    """A condition keeping its lastTransitionTime while its status does not change."""
    before = next((c for c in previous if c.type == type), None)
    transition = before.last_transition_time if before and before.status == status else now
    return Condition(type=type, status=status, reason=reason, message=_cap(message),
                     observed_generation=generation, last_transition_time=transition)


@dataclass(frozen=True)
class _Tally:
    phase: Phase
    total: int
    complete: int
    pending: int
    failed: list[FailedAdapter]
    lazy: bool


def _ready_condition(t: _Tally, problem: SourceProblem | None) -> tuple[str, str, str]:
    """(status, reason, message) of the Ready condition."""
    if t.phase is Phase.READY:
        message = f"{t.total} adapter(s) served as desired"
        if t.lazy:
            message += " (lazy adapters are placed and staged, loaded on first request)"
        return "True", "Ready", message
    if t.phase is Phase.PENDING:
        return "False", "Pending", "accepted; discovering the adapters of the source"
    if problem is not None:
        reason = problem.reason if t.phase is Phase.FAILED and not t.total else t.phase.value
        return "False", reason, problem.message
    if not t.total:
        return "False", "Failed", "no adapters selected"
    message = (f"{t.complete}/{t.total} adapter(s) served as desired, {t.pending} loading, "
               f"{len(t.failed)} failed")
    if t.failed:
        message += f"; first failure: {t.failed[0].name}: {t.failed[0].reason}"
    return "False", t.phase.value, message


def _conditions(t: _Tally, problem: SourceProblem | None, conflicts: Sequence[str],
                discovery_note: str, previous: Sequence[Condition], generation: int | None,
                now: str, scaling_note: str = "") -> list[Condition]:
    def cond(type: str, status: str, reason: str, message: str) -> Condition:
        return _condition(previous, type=type, status=status, reason=reason, message=message,
                          generation=generation, now=now)

    ready = _ready_condition(t, problem)
    loading = t.phase is Phase.LOADING
    out = [
        cond("Ready", *ready),
        cond("Progressing", "True" if loading else "False", "Loading" if loading else "Idle",
             f"{t.pending} adapter(s) waiting for their pods to confirm them" if t.pending
             else "no work in flight"),
        cond("Degraded", "True" if t.failed or problem else "False",
             problem.reason if problem else "AdaptersFailed" if t.failed else "AsExpected",
             problem.message if problem else
             f"{len(t.failed)} adapter(s) not fully served" if t.failed else "no failures"),
        cond("Conflict", "True" if conflicts else "False",
             "AdapterNameConflict" if conflicts else "NoConflict",
             "; ".join(conflicts) if conflicts else "no conflicting adapter names"),
    ]
    if discovery_note:
        out.append(cond("Discovered", "True", "Capped" if "capped" in discovery_note else
                        "Discovered", discovery_note))
    if scaling_note:
        out.append(cond("Scaled", "True", "Demand", scaling_note))
    return out


def compute_status(
    *,
    reports: Sequence[AdapterReport],
    generation: int | None,
    previous: LoraAdapterStatus | None,
    now: str,
    source_problem: SourceProblem | None = None,
    discovery_note: str = "",
    conflicts: Sequence[str] = (),
    discovered: bool = True,
    scaling_note: str = "",
) -> LoraAdapterStatus:
    """The whole status of one resource; `discovered` False: no discovery has completed yet."""
    reports = sorted(reports, key=lambda r: r.name)
    loaded = [r.name for r in reports if r.confirmed_pods]
    failed = [FailedAdapter(name=r.name, reason=_cap("; ".join(r.failures)))
              for r in reports if r.failures]
    per_pod: dict[str, list[str]] = {}
    for r in reports:
        for pod in r.confirmed_pods:
            per_pod.setdefault(pod, []).append(r.name)
    tally = _Tally(
        phase=resource_phase(reports, source_problem, discovered=discovered),
        total=len(reports), complete=sum(1 for r in reports if r.complete),
        pending=sum(1 for r in reports if r.pending), failed=failed,
        lazy=any(r.lazy for r in reports))
    truncated = len(loaded) > MAX_LIST or len(failed) > MAX_LIST or len(per_pod) > MAX_LIST or any(
        len(v) > MAX_LIST for v in per_pod.values())
    return LoraAdapterStatus(
        phase=tally.phase,
        loaded_adapters=loaded[:MAX_LIST],
        failed_adapters=failed[:MAX_LIST],
        pod_assignments=[PodAssignment(pod=pod, adapters=sorted(names)[:MAX_LIST])
                         for pod, names in sorted(per_pod.items())[:MAX_LIST]],
        conditions=_conditions(tally, source_problem, conflicts, discovery_note,
                               previous.conditions if previous else [], generation, now,
                               scaling_note),
        observed_generation=generation,
        desired_count=len(reports),
        loaded_count=len(loaded),
        failed_count=len(failed),
        truncated=truncated,
    )
