"""The actuator: each pod's loads and unloads run in a task of their own, outside the workers.

A reconcile hands its actions over and waits for them at most `wait` seconds: fast pods (the
common case, milliseconds per load) finish within the wait and the reconcile confirms them at once;
a pod that hangs keeps only its own task busy, while the worker moves on to other namespaces. What
finishes later is delivered to the next reconcile of its namespace (`collect`), which `on_done`
enqueues. A pod with work in flight gets no new work until it finishes (`in_flight`), so nothing is
sent twice. On shutdown, work in flight gets a grace period, then is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence

import structlog

from lora_controller.reconcile.executing import Executor, Outcome
from lora_controller.reconcile.planning import Action
from lora_controller.reconcile.refs import PodRef
from lora_controller.vllm.endpoint import Endpoint

log = structlog.get_logger(__name__)


class Actuator:
    def __init__(self, executor: Executor, *, on_done: Callable[[str], None]) -> None:
        self.executor = executor
        self.on_done = on_done
        self._running: dict[PodRef, tuple[asyncio.Task[list[Outcome]], tuple[Action, ...]]] = {}
        self._done: dict[str, list[Outcome]] = {}  # namespace -> outcomes finished in background

    def in_flight(self, namespace: str) -> frozenset[tuple[str, str]]:
        """(pod name, adapter) of every action still running in the namespace."""
        return frozenset((a.pod.name, a.name) for pod, (_, actions) in self._running.items()
                         if pod.namespace == namespace for a in actions)

    def busy(self, pod: PodRef) -> bool:
        return pod in self._running

    def collect(self, namespace: str) -> list[Outcome]:
        """Outcomes of the namespace's actions that finished after their reconcile moved on."""
        return self._done.pop(namespace, [])

    async def run(self, actions: Sequence[Action], endpoints: Mapping[PodRef, Endpoint], *,
                  proceed: Callable[[], bool], wait: float) -> list[Outcome]:
        """Start each idle pod's actions (a busy pod's wait for the next round) and return the
        outcomes of those that finish within `wait` seconds."""
        by_pod: dict[PodRef, list[Action]] = {}
        for action in actions:
            if action.pod not in self._running:
                by_pod.setdefault(action.pod, []).append(action)
        started: dict[asyncio.Task[list[Outcome]], PodRef] = {}
        for pod, acts in sorted(by_pod.items()):
            task = asyncio.create_task(
                self.executor.execute(acts, {pod: endpoints[pod]} if pod in endpoints else {},
                                      proceed=proceed), name=f"actions {pod}")
            self._running[pod] = (task, tuple(acts))
            started[task] = pod
        if not started:
            return []
        done, _ = await asyncio.wait(started, timeout=wait)
        outcomes: list[Outcome] = []
        for task, pod in started.items():
            if task in done:
                del self._running[pod]
                outcomes.extend(task.result())
            else:
                task.add_done_callback(functools.partial(self._finished_later, pod))
        return outcomes

    def _finished_later(self, pod: PodRef, task: asyncio.Task[list[Outcome]]) -> None:
        if self._running.get(pod, (None,))[0] is task:
            del self._running[pod]
        if task.cancelled():
            return
        self._done.setdefault(pod.namespace, []).extend(task.result())
        try:
            self.on_done(pod.namespace)
        except Exception:
            log.exception("actuator callback failed", pod=str(pod))

    async def stop(self, *, grace: float) -> None:
        """Let work in flight finish for `grace` seconds, then cancel what is left."""
        tasks = [task for task, _ in self._running.values()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pending:
            log.warning("loads cancelled at shutdown", pods=len(pending))
