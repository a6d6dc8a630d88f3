"""The LoRA controller: wiring only.

    informers (LoraAdapters; per namespace Pods and Secrets)
        -> causes (which namespace, does it matter)  -> the work queue (one key per namespace)
        -> the runner's workers -> NamespaceReconciler (pipeline.py) -> the round's Writer
    observer (each vLLM pod's `/v1/models`) -> a changed report enqueues the pod's namespace
    ControllerView (view.py) -> the router API

Standby replicas run everything but write nothing (`Writers` gives them a writer that does
nothing), so their router API answers from the same caches and observations as the leader's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from lora_controller.core.clock import Clock, RealClock
from lora_controller.core.memory import MemoryTrimmer
from lora_controller.kube.client import KubeClient
from lora_controller.kube.events import EventRecorder
from lora_controller.kube.informer import InformerFactory
from lora_controller.kube.resources import LORA_ADAPTERS
from lora_controller.kube.runner import Controller, Result
from lora_controller.kube.status import StatusWriter
from lora_controller.reconcile.actuator import Actuator
from lora_controller.reconcile.cache import ClusterCache
from lora_controller.reconcile.causes import cr_update_matters, namespace_of, pod_seen
from lora_controller.reconcile.discovering import DiscoveryCache
from lora_controller.reconcile.executing import Executor
from lora_controller.reconcile.history import History
from lora_controller.reconcile.lazy import LazyLoads
from lora_controller.reconcile.metrics import forget_pod
from lora_controller.reconcile.observing import Observer
from lora_controller.reconcile.pipeline import NamespaceReconciler, Timing
from lora_controller.reconcile.pods import target_pod
from lora_controller.reconcile.view import ControllerView
from lora_controller.reconcile.watches import NamespaceWatches
from lora_controller.reconcile.writer import LeaderWriter, Writers
from lora_controller.sources.model import SourceOptions
from lora_controller.sources.store import AdapterStore
from lora_controller.vllm.client import VllmClient

JSON = dict[str, Any]
log = structlog.get_logger(__name__)


@dataclass
class ControllerConfig:
    namespaces: list[str] | None = None  # None: every namespace
    workers: int = 4
    resync: float = 300.0
    poll_interval: float = 10.0
    discovery_ttl: float = 300.0
    identity: str = "lora-controller"
    requeue_pending: float = 2.0
    action_wait: float = 10.0  # a reconcile waits this long for its loads (they go on after)
    shutdown_grace: float = 20.0  # loads in flight at shutdown get this long, then are cancelled
    scale_down_delay: float = 120.0  # demand-scaled replicas are removed only after this long


class LoraController:
    def __init__(self, kube: KubeClient, vllm: VllmClient, store: AdapterStore,
                 config: ControllerConfig, *, is_leader: Callable[[], bool] = lambda: True,
                 clock: Clock | None = None, source_options: SourceOptions | None = None) -> None:
        clock = clock or RealClock()
        self.config = config
        self.vllm = vllm
        self.clock = clock
        self.factory = InformerFactory(kube, resync_period=config.resync, clock=clock)
        self.cache = ClusterCache()
        self.runner: Controller[str] = Controller(
            "loraadapter", reconcile=self._reconcile, workers=config.workers, clock=clock)
        self.observer = Observer(vllm, interval=config.poll_interval, clock=clock,
                                 on_change=lambda ref: self.runner.enqueue(ref.namespace))
        self.watches = NamespaceWatches(self.factory, on_pod=self._on_pod,
                                        on_pod_gone=self._on_pod_gone, on_secret=self._on_object)
        self.events = EventRecorder(kube, instance=config.identity, clock=clock)
        self.actuator = Actuator(Executor(vllm), on_done=self.runner.enqueue)
        self.history = History()
        leader = LeaderWriter(kube, status=StatusWriter(kube, LORA_ADAPTERS, clock=clock),
                              events=self.events, store=store, actuator=self.actuator,
                              history=self.history, leading=is_leader, clock=clock)
        self.lazy = LazyLoads(self.runner.enqueue)
        self.reconciler = NamespaceReconciler(
            cache=self.cache, watches=self.watches, observer=self.observer,
            discovery=DiscoveryCache(secrets=self.watches.secret, ttl=config.discovery_ttl,
                                     options=source_options, clock=clock),
            store=store, writers=Writers(leader, is_leader=is_leader), lazy=self.lazy,
            clock=clock, timing=Timing(requeue_pending=config.requeue_pending,
                                       resync=config.resync, action_wait=config.action_wait),
            wake=self.runner.enqueue, scale_down_delay=config.scale_down_delay)
        self.view = ControllerView(cache=self.cache, observer=self.observer,
                                   reconciler=self.reconciler, lazy=self.lazy,
                                   history=self.history, namespaces=config.namespaces)
        self._trimmer = MemoryTrimmer()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        namespaces: list[str | None] = [*self.config.namespaces] if self.config.namespaces else [None]
        for ns in namespaces:
            inf = self.factory.informer(LORA_ADAPTERS, namespace=ns,
                                        transform=self.cache.keep_parsed)
            inf.add_event_handler(on_add=self._on_object, on_update=self._on_cr_update,
                                  on_delete=self._on_cr_delete)
            self.cache.cr_informers.append(inf)
            inf.start()
        for inf in self.cache.cr_informers:
            await inf.wait_for_cache_sync(timeout=None)
        self._tasks.append(asyncio.create_task(self.observer.run(), name="observer"))
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop(drain=True, timeout=self.config.shutdown_grace)
        await self.actuator.stop(grace=self.config.shutdown_grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.factory.stop()
        await self.events.flush()

    def resync_all(self) -> None:
        """Reconcile every namespace now (a new leader takes over)."""
        for ns in sorted({c.metadata.namespace for c in self.cache.crs()}):
            self.runner.enqueue(ns)

    @property
    def synced(self) -> bool:
        return all(i.has_synced() for i in self.factory.informers)

    async def _reconcile(self, namespace: str) -> Result:
        started = self.clock.monotonic()
        result = await self.reconciler.reconcile(namespace)
        self._trimmer.maybe_trim(self.clock.monotonic())
        log.debug("reconciled", namespace=namespace,
                  seconds=round(self.clock.monotonic() - started, 4),
                  requeue_after=result.requeue_after)
        return result

    # -- event handlers: they only map events to namespaces (causes.py) ------------------------
    def _on_object(self, obj: JSON) -> None:
        self.runner.enqueue(namespace_of(obj))

    def _on_cr_update(self, old: JSON, new: JSON) -> None:
        if cr_update_matters(old, new):
            self._on_object(new)

    def _on_cr_delete(self, obj: JSON) -> None:
        self.cache.forget_cr(obj)
        self._on_object(obj)

    def _on_pod(self, obj: JSON) -> None:
        pod = target_pod(obj)
        effect = pod_seen(self.cache.put_pod(pod), pod)
        if effect.follow:
            self.observer.track(pod)  # only vLLM servers with LoRA are worth reading
        else:
            self.observer.untrack(pod.ref)
        if effect.enqueue:
            self.runner.enqueue(pod.namespace)

    def _on_pod_gone(self, obj: JSON) -> None:
        pod = target_pod(obj)
        self.cache.drop_pod(pod.ref)
        self.observer.untrack(pod.ref)
        if pod.endpoint is not None:
            self.vllm.forget(pod.endpoint)
        forget_pod(str(pod.ref))
        self.runner.enqueue(pod.namespace)
