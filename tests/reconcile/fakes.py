"""In-process fakes for testing the reconcile pipeline without an API server.

The API server's side is faked (a store of LoraAdapter objects, a writer that records what it
would write and feeds statuses back like a watch would); everything else is real: the simulator
serves vLLM's HTTP API on loopback, the vLLM client and the observer read it, adapters are real
files on disk, discovery and the scheduler run unchanged, and time is a `FakeClock`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_controller.api.types import API_VERSION, FINALIZER, LoraAdapter, LoraAdapterStatus
from lora_controller.core.clock import FakeClock
from lora_controller.kube.store import Store
from lora_controller.reconcile.actuator import Actuator
from lora_controller.reconcile.cache import ClusterCache
from lora_controller.reconcile.discovering import DiscoveryCache
from lora_controller.reconcile.executing import Executor, Outcome
from lora_controller.reconcile.lazy import LazyLoads
from lora_controller.reconcile.ledger import Ledger, write_ledger
from lora_controller.reconcile.observing import Observer
from lora_controller.reconcile.pipeline import NamespaceReconciler
from lora_controller.reconcile.planning import Action
from lora_controller.reconcile.pods import target_pod
from lora_controller.reconcile.refs import PodRef
from lora_controller.reconcile.world import Wanted
from lora_controller.reconcile.writer import Writers
from lora_controller.simulator.config import PodConfig
from lora_controller.simulator.fleet import SimulatedFleet
from lora_controller.simulator.pod import SimulatedPod
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.store import AdapterStore
from lora_controller.vllm.client import VllmClient
from lora_controller.vllm.endpoint import Endpoint

JSON = dict[str, Any]
MODEL = "tiny-llama"


class Feed:
    """What an informer offers the cache: a store and `has_synced`."""

    def __init__(self) -> None:
        self.store = Store()

    def has_synced(self) -> bool:
        return True


class Watches:
    """The per-namespace watches, always in sync (pods are put in the cache by hand)."""

    def sync(self, namespace: str, crs: Sequence[LoraAdapter]) -> None:
        return None

    def synced(self, namespace: str) -> bool:
        return True


@dataclass
class RecordingWriter:
    """A leader's writer whose API-server side is recorded (and statuses fed back to the feed);
    loads, unloads and staging are real."""

    feed: Feed
    actuator: Actuator
    store: AdapterStore
    acts: bool = True
    statuses: list[tuple[str, LoraAdapterStatus]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (cr, reason, note)
    finalizers_removed: list[str] = field(default_factory=list)
    executed: list[Action] = field(default_factory=list)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def _update(self, cr: LoraAdapter, change: Mapping[str, Any]) -> None:
        key = f"{cr.metadata.namespace}/{cr.metadata.name}"
        obj = self.feed.store.get(key)
        if obj is None:
            return
        new = {**obj, **change, "metadata": {**obj["metadata"], **change.get("metadata", {}),
                                             "resourceVersion": str(next(self._versions))}}
        self.feed.store.upsert(new)

    async def add_finalizer(self, cr: LoraAdapter) -> None:
        self._update(cr, {"metadata": {"finalizers": [*cr.metadata.finalizers, FINALIZER]}})

    async def remove_finalizer(self, cr: LoraAdapter) -> bool:
        self.finalizers_removed.append(cr.metadata.name)
        self.feed.store.delete(f"{cr.metadata.namespace}/{cr.metadata.name}")
        return True

    async def write_status(self, cr: LoraAdapter, status: LoraAdapterStatus) -> bool:
        body = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        if cr.status is not None and cr.status.model_dump(
                mode="json", by_alias=True, exclude_none=True) == body:
            return False
        self.statuses.append((cr.metadata.name, status))
        self._update(cr, {"status": body})
        return True

    async def record_event(self, cr: LoraAdapter, *, type: str, reason: str, action: str,
                           note: str) -> None:
        self.events.append((cr.metadata.name, reason, note))

    async def stage(self, w: Wanted, credentials: SourceCredentials | None) -> None:
        await self.store.stage(w.adapter, namespace=w.cr.metadata.namespace,
                               cr=w.cr.metadata.name, credentials=credentials)

    async def execute(self, actions: Sequence[Action], endpoints: Mapping[PodRef, Endpoint], *,
                      wait: float) -> list[Outcome]:
        self.executed.extend(actions)
        return await self.actuator.run(actions, endpoints, proceed=lambda: True, wait=wait)

    def collect(self, namespace: str) -> list[Outcome]:
        return self.actuator.collect(namespace)

    def in_flight(self, namespace: str) -> frozenset[tuple[str, str]]:
        return self.actuator.in_flight(namespace)

    async def gc_store(self, namespace: str, keep: set[Path]) -> None:
        await self.store.gc(keep=keep, namespace=namespace)

    async def save_ledger(self, namespace: str, ledger: Ledger) -> None:
        await write_ledger(self.store.root, namespace, ledger)

    def last_status(self, cr: str) -> LoraAdapterStatus:
        return [s for name, s in self.statuses if name == cr][-1]


def pod_object(namespace: str, name: str, port: int, *, labels: dict[str, str] | None = None,
               max_loras: int = 2, max_cpu_loras: int = 4, ready: bool = True,
               runtime_updates: bool = True) -> JSON:
    env = [{"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"}] if runtime_updates else []
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}",
                     "labels": {"lora-enabled": "true", **(labels or {})}},
        "spec": {"containers": [{
            "name": "vllm", "command": ["vllm", "serve"],
            "args": ["--model", MODEL, "--enable-lora", "--max-loras", str(max_loras),
                     "--max-cpu-loras", str(max_cpu_loras), "--port", str(port)],
            "env": env, "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def cr_object(namespace: str, name: str, repository: Path, *, created: str = "2026-01-01T00:00:00Z",
              **spec: Any) -> JSON:
    return {
        "apiVersion": API_VERSION, "kind": "LoraAdapter",
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "generation": 1,
                     "resourceVersion": "1", "creationTimestamp": created},
        "spec": {"baseModel": MODEL, "adapterSource": {"type": "local",
                                                       "repository": str(repository)}, **spec},
    }


@dataclass
class World:
    """One namespace, its simulated pods and a reconciler wired to fakes."""

    namespace: str
    fleet: SimulatedFleet
    client: VllmClient
    store_root: Path
    clock: FakeClock = field(default_factory=FakeClock)
    feed: Feed = field(default_factory=Feed)
    cache: ClusterCache = field(default_factory=ClusterCache)
    enqueued: list[str] = field(default_factory=list)
    sims: dict[str, SimulatedPod] = field(default_factory=dict)
    leading: bool = True

    def __post_init__(self) -> None:
        self.cache.cr_informers.append(self.feed)  # type: ignore[arg-type]
        self.observer = Observer(self.client, clock=self.clock)
        self.store = AdapterStore(self.store_root)
        self.lazy = LazyLoads(self.enqueued.append)
        self.writer = RecordingWriter(
            self.feed, Actuator(Executor(self.client), on_done=self.enqueued.append), self.store)
        self.reconciler = NamespaceReconciler(
            cache=self.cache, watches=Watches(), observer=self.observer,
            discovery=DiscoveryCache(secrets=lambda _ns, _name: None, clock=self.clock),
            store=self.store, writers=Writers(self.writer, is_leader=lambda: self.leading),
            lazy=self.lazy, clock=self.clock)

    async def add_pod(self, name: str, **kwargs: Any) -> SimulatedPod:
        sim = await self.fleet.add_pod(PodConfig(model=MODEL, max_loras=kwargs.get("max_loras", 2),
                                                 max_cpu_loras=kwargs.get("max_cpu_loras", 4)))
        self.sims[name] = sim
        pod = target_pod(pod_object(self.namespace, name, sim.port, **kwargs))
        self.cache.put_pod(pod)
        self.observer.track(pod)
        return sim

    def add_endpoint(self, name: str, port: int, **kwargs: Any) -> None:
        """A pod served by something else than the simulator (a hostile pod, say)."""
        pod = target_pod(pod_object(self.namespace, name, port, **kwargs))
        self.cache.put_pod(pod)
        self.observer.track(pod)

    def apply(self, obj: JSON) -> None:
        self.feed.store.upsert(obj)

    def delete(self, name: str) -> None:
        key = f"{self.namespace}/{name}"
        obj = self.feed.store.get(key)
        assert obj is not None
        self.feed.store.upsert({**obj, "metadata": {**obj["metadata"],
                                                 "deletionTimestamp": "2026-01-01T00:01:00Z",
                                                 "resourceVersion": "9999"}})

    def cr(self, name: str) -> JSON | None:
        return self.feed.store.get(f"{self.namespace}/{name}")

    async def reconcile(self) -> float | None:
        return (await self.reconciler.reconcile(self.namespace)).requeue_after

    def loaded(self, pod: str) -> dict[str, str]:
        return {a.name: a.path for a in self.sims[pod].adapters.values()}
