"""A LoraAdapter's status, computed from what the pods confirm (pure).

Nothing here trusts intent: an adapter counts as loaded on a pod only when that pod's `/v1/models`
lists it with the path the controller chose. The phase follows DESIGN.md:
- `Loading` while any desired replica is neither confirmed nor failed (work in flight);
- `Ready` when every adapter has every desired replica confirmed (lazy adapters: placed and staged);
- `Partial` when some adapters (or replicas) are served and some failed;
- `Failed` when none could be (including a source that cannot be read or matches nothing).

Lists are bounded (`MAX_LIST` entries) so a resource with thousands of adapters stays far from
etcd's object size limit; counts stay exact and `truncated` says when lists were cut.
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


@dataclass
class AdapterReport:
    """Everything known about one adapter of one LoraAdapter, for its status."""

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


def _cap(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _condition(
    previous: Sequence[Condition], *, type: str, status: str, reason: str, message: str,
    generation: int | None, now: str,
) -> Condition:
    """A condition keeping its lastTransitionTime while its status does not change."""
    before = next((c for c in previous if c.type == type), None)
    transition = before.last_transition_time if before and before.status == status else now
    return Condition(
        type=type, status=status,
        reason=reason, message=_cap(message), observed_generation=generation,
        last_transition_time=transition,
    )


def compute_status(
    *,
    reports: Sequence[AdapterReport],
    generation: int | None,
    previous: LoraAdapterStatus | None,
    now: str,
    source_problem: SourceProblem | None = None,
    discovery_note: str = "",
    conflicts: Sequence[str] = (),
) -> LoraAdapterStatus:
    prev_conditions = previous.conditions if previous else []
    reports = sorted(reports, key=lambda r: r.name)
    loaded = [r.name for r in reports if r.confirmed_pods]
    failed = [FailedAdapter(name=r.name, reason=_cap("; ".join(r.failures)))
              for r in reports if r.failures]
    per_pod: dict[str, list[str]] = {}
    for r in reports:
        for pod in r.confirmed_pods:
            per_pod.setdefault(pod, []).append(r.name)
    complete = sum(1 for r in reports if r.complete)
    fully_loaded = sum(1 for r in reports if r.complete and not r.lazy)
    pending = [r for r in reports if r.pending or r.in_flight]
    served = [r for r in reports if r.served]

    if not reports:
        phase = Phase.FAILED
    elif pending:
        phase = Phase.LOADING
    elif complete == len(reports) and source_problem is None:
        phase = Phase.READY
    elif served:
        phase = Phase.PARTIAL
    else:
        phase = Phase.FAILED

    truncated = len(loaded) > MAX_LIST or len(failed) > MAX_LIST or len(per_pod) > MAX_LIST or any(
        len(v) > MAX_LIST for v in per_pod.values())
    assignments = [PodAssignment(pod=pod.split("/", 1)[-1], adapters=sorted(names)[:MAX_LIST])
                   for pod, names in sorted(per_pod.items())[:MAX_LIST]]

    # Conditions.
    if phase is Phase.READY:
        ready_msg = f"{len(reports)} adapter(s) served as desired"
        if any(r.lazy for r in reports):
            ready_msg += " (lazy adapters are placed and staged, loaded on first request)"
    elif source_problem is not None:
        ready_msg = source_problem.message
    elif not reports:
        ready_msg = "no adapters selected"
    else:
        ready_msg = (f"{complete}/{len(reports)} adapter(s) served as desired, {len(pending)} "
                     f"loading, {len(failed)} failed")
        if failed:
            ready_msg += f"; first failure: {failed[0].name}: {failed[0].reason}"
    ready_reason = (source_problem.reason if source_problem and phase is Phase.FAILED and not reports
                    else phase.value)
    conditions = [
        _condition(prev_conditions, type="Ready", status="True" if phase is Phase.READY else "False",
                   reason=ready_reason, message=ready_msg, generation=generation, now=now),
        _condition(prev_conditions, type="Progressing",
                   status="True" if phase is Phase.LOADING else "False",
                   reason="Loading" if phase is Phase.LOADING else "Idle",
                   message=(f"{len(pending)} adapter(s) waiting for their pods to confirm them"
                            if pending else "no work in flight"),
                   generation=generation, now=now),
        _condition(prev_conditions, type="Degraded",
                   status="True" if failed or source_problem else "False",
                   reason=(source_problem.reason if source_problem else
                           "AdaptersFailed" if failed else "AsExpected"),
                   message=(source_problem.message if source_problem else
                            f"{len(failed)} adapter(s) not fully served" if failed else
                            "no failures"),
                   generation=generation, now=now),
        _condition(prev_conditions, type="Conflict", status="True" if conflicts else "False",
                   reason="AdapterNameConflict" if conflicts else "NoConflict",
                   message="; ".join(conflicts) if conflicts else "no conflicting adapter names",
                   generation=generation, now=now),
    ]
    if discovery_note:
        conditions.append(_condition(prev_conditions, type="Discovered", status="True",
                                     reason="Capped" if "capped" in discovery_note else "Discovered",
                                     message=discovery_note, generation=generation, now=now))
    return LoraAdapterStatus(
        phase=phase,
        loaded_adapters=loaded[:MAX_LIST],
        failed_adapters=failed[:MAX_LIST],
        pod_assignments=assignments,
        conditions=conditions,
        observed_generation=generation,
        desired_count=len(reports),
        loaded_count=fully_loaded,
        failed_count=len(failed),
        truncated=truncated,
    )
