"""Observed state: what each target pod's `/v1/models` says, polled with jitter and probed on events.

`/v1/models` is the only truth about placement (vLLM's metrics show only adapters with requests in
flight). Every replica of the controller runs this, leader or not: it only reads, and it is what
the router API answers from. A pod is polled at least every `interval` seconds (jittered down by up
to `jitter`, never up: what a replica answers is at most one interval older than the pod; the router
API shows each pod's `observedAt`), and probed at once when it becomes Ready, changes IP or UID, or
a container restarts. When what a pod reports changes, `on_change(pod)` is called (the controller
enqueues that pod's namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from lora_controller.core.clock import Clock, RealClock
from lora_controller.reconcile.pods import TargetPod
from lora_controller.reconcile.refs import PodRef
from lora_controller.vllm.client import VllmClient
from lora_controller.vllm.endpoint import Endpoint
from lora_controller.vllm.errors import VllmError
from lora_controller.vllm.models import LoraRequestsInfo, parse_lora_requests_info

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Usage:
    """Adapters a pod ran or queued lately, from vLLM's `vllm:lora_requests_info` (no counts:
    vLLM reports which adapters were running or waiting, and when, not how many requests)."""

    running: frozenset[str]
    waiting: frozenset[str]
    max_lora: int | None
    at: float  # monotonic time of the read

    @property
    def slots_full(self) -> bool:
        """Adapters wait while the pod's `--max-loras` slots are all taken: slot pressure."""
        return bool(self.waiting) and self.max_lora is not None and \
            len(self.running) >= self.max_lora


def usage_of(series: Sequence[LoraRequestsInfo], *, now: float, wall: float,
             horizon: float) -> Usage:
    """The series current within `horizon` seconds of the pod's newest one (or of our clock,
    whichever is later: an idle pod's newest series is old)."""
    newest = max((s.timestamp for s in series), default=0.0)
    recent = [s for s in series if s.timestamp >= max(newest, wall) - horizon]
    return Usage(running=frozenset(n for s in recent for n in s.running),
                 waiting=frozenset(n for s in recent for n in s.waiting),
                 max_lora=next((s.max_lora for s in reversed(series) if s.max_lora), None), at=now)


@dataclass(frozen=True)
class Observation:
    """One read of a pod's `/v1/models` (or why it failed)."""

    pod: PodRef
    identity: tuple[str, str | None, int]
    adapters: dict[str, str | None] = field(default_factory=dict)  # name -> root (lora_path)
    base_models: tuple[str, ...] = ()
    at: float = 0.0  # monotonic
    observed_at: datetime | None = None  # wall clock, for freshness shown to routers
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def same_content(self, other: Observation | None) -> bool:
        return other is not None and (self.adapters, self.base_models, self.error, self.identity) == (
            other.adapters, other.base_models, other.error, other.identity)


class Observer:
    def __init__(
        self,
        client: VllmClient,
        *,
        interval: float = 10.0,
        jitter: float = 0.2,
        concurrency: int = 64,
        call_timeout: float = 5.0,
        clock: Clock | None = None,
        on_change: Callable[[PodRef], None] | None = None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.jitter = jitter
        self.call_timeout = call_timeout
        self.clock = clock or RealClock()
        self.on_change = on_change
        self._pods: dict[PodRef, TargetPod] = {}
        self._obs: dict[PodRef, Observation] = {}
        self._heap: list[tuple[float, int, PodRef]] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(concurrency)
        self._inflight: dict[PodRef, asyncio.Task[Observation]] = {}
        # adapter name -> pods listing it, sorted: a tuple, not a set (one per adapter of the
        # fleet, most listed by a pod or two: 48 bytes instead of 216)
        self._by_adapter: dict[str, tuple[PodRef, ...]] = {}
        self._usage: dict[PodRef, Usage] = {}
        self.usage_namespaces: set[str] = set()  # pods whose /metrics are read for usage
        self.polls = 0

    # -- tracking ------------------------------------------------------------------------------
    def track(self, pod: TargetPod) -> None:
        """Follow a pod; a new pod, or one whose server changed (UID, IP, restarts, readiness), is probed now."""
        before = self._pods.get(pod.ref)
        self._pods[pod.ref] = pod
        if before is None or before.identity != pod.identity or before.ready != pod.ready:
            self._schedule(pod.ref, 0.0)

    def untrack(self, pod_key: PodRef) -> None:
        self._pods.pop(pod_key, None)
        self._usage.pop(pod_key, None)
        self._index(pod_key, self._obs.pop(pod_key, None), None)

    def usage(self, pod_key: PodRef) -> Usage | None:
        """What the pod last reported of adapter use (None: not read, or not wanted)."""
        return self._usage.get(pod_key)

    def pods_listing(self, adapter: str) -> list[PodRef]:
        """Pods whose latest `/v1/models` lists an adapter of this name (any root)."""
        return list(self._by_adapter.get(adapter, ()))

    def _index(self, pod_key: PodRef, before: Observation | None, after: Observation | None) -> None:
        old = set(before.adapters) if before is not None else set()
        new = set(after.adapters) if after is not None else set()
        for name in old - new:
            rest = tuple(p for p in self._by_adapter.get(name, ()) if p != pod_key)
            if rest:
                self._by_adapter[name] = rest
            else:
                self._by_adapter.pop(name, None)
        for name in new - old:
            pods = self._by_adapter.get(name, ())
            if pod_key not in pods:
                self._by_adapter[name] = tuple(sorted((*pods, pod_key)))

    def tracked(self) -> list[PodRef]:
        return sorted(self._pods)

    def get(self, pod_key: PodRef) -> Observation | None:
        """The latest observation, only if it was made of the pod's current server."""
        obs = self._obs.get(pod_key)
        pod = self._pods.get(pod_key)
        if obs is None or pod is None or obs.identity != pod.identity:
            return None
        return obs

    # -- polling -------------------------------------------------------------------------------
    def _schedule(self, pod_key: PodRef, delay: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.clock.monotonic() + delay, self._seq, pod_key))
        self._wake.set()

    def _next_delay(self) -> float:
        return self.interval * (1 - self.jitter * random.random())

    async def probe(self, pod_key: PodRef) -> Observation | None:
        """Read the pod's `/v1/models` now (joining a read already in flight)."""
        pod = self._pods.get(pod_key)
        if pod is None:
            return None
        task = self._inflight.get(pod_key)
        if task is None:
            task = asyncio.create_task(self._poll(pod))
            self._inflight[pod_key] = task

            def forget(_: asyncio.Task[Observation]) -> None:
                if self._inflight.get(pod_key) is task:
                    del self._inflight[pod_key]

            task.add_done_callback(forget)
        return await asyncio.shield(task)

    async def _read(self, pod: TargetPod) -> Observation:
        now, wall = self.clock.monotonic(), self.clock.now()
        endpoint = pod.endpoint
        if endpoint is None:
            return Observation(pod.ref, pod.identity, at=now, observed_at=wall,
                               error="pod has no IP yet")
        try:
            models = await self.client.list_models(endpoint, call_timeout=self.call_timeout)
        except VllmError as exc:
            return Observation(pod.ref, pod.identity, at=now, observed_at=wall,
                               error=f"cannot read /v1/models of pod {pod.name}: {exc.reason}")
        if pod.namespace in self.usage_namespaces:
            await self._read_usage(pod, endpoint, now, wall)
        return Observation(pod.ref, pod.identity, adapters={a.id: a.root for a in models.adapters},
                           base_models=tuple(b.id for b in models.base_models), at=now,
                           observed_at=wall)

    async def _read_usage(self, pod: TargetPod, endpoint: Endpoint, now: float,
                          wall: datetime) -> None:
        """What the pod's `/metrics` says of adapter use (only where demand matters)."""
        try:
            text = await self.client.metrics_text(endpoint, call_timeout=self.call_timeout)
            series = parse_lora_requests_info(text)
        except (VllmError, ValueError) as exc:
            log.debug("pod metrics not read", pod=str(pod.ref), error=str(exc)[:200])
            self._usage.pop(pod.ref, None)
            return
        self._usage[pod.ref] = usage_of(series, now=now, wall=wall.timestamp(),
                                        horizon=2 * self.interval)

    async def _poll(self, pod: TargetPod) -> Observation:
        async with self._sem:
            self.polls += 1
            obs = await self._read(pod)
        if pod.ref not in self._pods:
            return obs
        before = self._obs.get(pod.ref)
        self._obs[pod.ref] = obs
        self._index(pod.ref, before, obs)
        if not obs.same_content(before) and self.on_change is not None:
            try:
                self.on_change(pod.ref)
            except Exception:
                log.exception("observer change handler failed", pod=str(pod.ref))
        return obs

    async def run(self) -> None:
        """Poll tracked pods forever (until cancelled)."""
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                now = self.clock.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    if key not in self._pods or key in self._inflight:
                        continue
                    task = asyncio.create_task(self._poll_and_reschedule(key))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                self._wake.clear()
                delay = self._heap[0][0] - now if self._heap else self.interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, delay)):
                        await self._wake.wait()
        finally:
            for task in tasks:
                task.cancel()

    async def _poll_and_reschedule(self, key: PodRef) -> None:
        try:
            await self.probe(key)
        except Exception:
            log.exception("poll failed", pod=str(key))
        if key in self._pods:
            self._schedule(key, self._next_delay())
