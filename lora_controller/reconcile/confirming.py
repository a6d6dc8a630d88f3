"""The confirm stage: only a pod's `/v1/models` confirms what an action did.

After actions ran, the pods they touched are read again. A pod that answered a load with success
but does not list the adapter, or an unload with success but still lists it, is lying or broken:
that outcome becomes a failure (`NotListed`, `StillListed`) of the whole pod, which cannot be
trusted, so every action on it backs off (1 s doubling to 60 s) and the reason is reported,
instead of being retried every second forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from lora_controller.reconcile.executing import Outcome
from lora_controller.reconcile.planning import Load
from lora_controller.reconcile.snapshot import NamespaceSnapshot, PodReports


def contradicted(outcome: Outcome, snapshot: NamespaceSnapshot) -> Outcome:
    """The outcome as the pod's fresh report tells it."""
    if not outcome.ok:
        return outcome
    action = outcome.action
    obs = snapshot.observed(action.pod.name)
    if obs is None or not obs.ok:
        return outcome  # cannot tell: the next read will
    if isinstance(action, Load):
        if obs.adapters.get(action.name) != action.path:
            return Outcome(action, False, "NotListed", "the pod accepted the load but its "
                           "/v1/models does not list the adapter with that path", retryable=True)
    elif action.name in obs.adapters:
        return Outcome(action, False, "StillListed",
                       "the pod accepted the unload but its /v1/models still lists the adapter",
                       retryable=True)
    return outcome


async def confirm(reports: PodReports, snapshot: NamespaceSnapshot,
                  outcomes: Sequence[Outcome]) -> tuple[NamespaceSnapshot, list[Outcome]]:
    """Read the touched pods again; the refreshed snapshot and the outcomes the pods confirm."""
    touched = sorted({o.action.pod for o in outcomes})
    await asyncio.gather(*(reports.probe(p) for p in touched))
    fresh = snapshot.with_reports(reports, touched)
    return fresh, [contradicted(o, fresh) for o in outcomes]
