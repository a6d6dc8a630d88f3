"""The executor: carries out planned loads and unloads against the pods, concurrently.

Concurrency per pod is bounded by the vLLM client (its per-pod load slots); across pods everything
runs at once, so convergence time is close to (loads per pod / concurrency) x load latency. Every
action yields an `Outcome`; nothing raises out of `execute`. Each call is made only while
`proceed()` holds (the leader's fence): a replica that loses the Lease stops issuing calls at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from prometheus_client import Counter, Histogram

from lora_controller.reconcile.planning import Action, Load, Unload
from lora_controller.reconcile.refs import PodRef
from lora_controller.vllm.client import VllmClient
from lora_controller.vllm.endpoint import Endpoint
from lora_controller.vllm.errors import VllmError

log = structlog.get_logger(__name__)

LOADS = Counter("lora_controller_loads_total", "Adapter loads by result and reason.",
                ["result", "reason"])
UNLOADS = Counter("lora_controller_unloads_total", "Adapter unloads by result and reason.",
                  ["result", "reason"])
LOAD_SECONDS = Histogram(
    "lora_controller_load_duration_seconds", "Time to load one adapter on one pod.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


@dataclass(frozen=True)
class Outcome:
    action: Action
    ok: bool
    reason: str = ""  # CamelCase class of failure (AdapterInvalid, Transient, ...)
    message: str = ""
    retryable: bool = False


class Executor:
    def __init__(self, client: VllmClient) -> None:
        self.client = client

    async def execute(
        self, actions: Sequence[Action], endpoints: Mapping[PodRef, Endpoint], *,
        proceed: Callable[[], bool] = lambda: True,
    ) -> list[Outcome]:
        """Run all actions; unloads on a pod go before its loads (they free slots)."""
        by_pod: dict[PodRef, list[Action]] = {}
        for action in actions:
            by_pod.setdefault(action.pod, []).append(action)
        results = await asyncio.gather(*(
            self._run_pod(acts, endpoints.get(pod), proceed) for pod, acts in sorted(by_pod.items())
        ))
        return [o for outcomes in results for o in outcomes]

    async def _run_pod(self, actions: list[Action], endpoint: Endpoint | None,
                       proceed: Callable[[], bool]) -> list[Outcome]:
        if endpoint is None:
            return [Outcome(a, False, "PodUnreachable", "the pod has no address", True) for a in actions]
        unloads = [a for a in actions if isinstance(a, Unload)]
        loads = [a for a in actions if isinstance(a, Load)]
        outcomes = list(await asyncio.gather(*(self._one(a, endpoint, proceed) for a in unloads)))
        outcomes += await asyncio.gather(*(self._one(a, endpoint, proceed) for a in loads))
        return outcomes

    async def _one(self, action: Action, endpoint: Endpoint, proceed: Callable[[], bool]) -> Outcome:
        if not proceed():
            return Outcome(action, False, "NotLeader", "this replica does not lead", True)
        started = time.monotonic()
        try:
            if isinstance(action, Load):
                await self.client.load_adapter(endpoint, name=action.name, path=action.path,
                                               inplace=action.inplace)
                LOAD_SECONDS.observe(time.monotonic() - started)
                LOADS.labels("ok", "Reloaded" if action.inplace else "Loaded").inc()
            else:
                await self.client.unload_adapter(endpoint, name=action.name)
                UNLOADS.labels("ok", "Unloaded").inc()
            return Outcome(action, True)
        except VllmError as exc:
            kind = type(exc).__name__
            (LOADS if isinstance(action, Load) else UNLOADS).labels("error", kind).inc()
            return Outcome(action, False, kind, exc.reason, exc.retryable)
        except Exception as exc:  # a bug must not stop the other actions
            log.exception("action failed unexpectedly", pod=str(action.pod), adapter=action.name)
            (LOADS if isinstance(action, Load) else UNLOADS).labels("error", "Internal").inc()
            return Outcome(action, False, "Internal", f"{type(exc).__name__}: {exc}", True)
