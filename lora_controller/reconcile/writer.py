"""Who writes: every side effect of a reconcile goes through a `Writer`.

A reconcile asks `Writers.current()` once, at its start, for the writer of this replica's role:
the leader's writer acts (status, events, finalizers, downloads, loads and unloads, store GC); a
standby's writer does nothing, so a standby runs the same pipeline (its router API answers from the
same caches and observations) without a flag threaded through the stages. The leader's writer also
fences each call on the Lease: a replica that loses leadership in the middle of a reconcile stops
writing at once, and the next reconcile gets the standby's writer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from lora_controller.api.types import FINALIZER, LoraAdapter, LoraAdapterStatus
from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube.client import JSON_PATCH, ApiError, KubeClient
from lora_controller.kube.events import EventRecorder
from lora_controller.kube.resources import LORA_ADAPTERS
from lora_controller.kube.status import StatusWriter
from lora_controller.reconcile.actuator import Actuator
from lora_controller.reconcile.executing import Outcome
from lora_controller.reconcile.history import EventRecord, History
from lora_controller.reconcile.ledger import Ledger, write_ledger
from lora_controller.reconcile.planning import Action
from lora_controller.reconcile.refs import CrRef, PodRef
from lora_controller.reconcile.world import Wanted
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.errors import SourceError
from lora_controller.sources.store import AdapterStore
from lora_controller.vllm.endpoint import Endpoint

log = structlog.get_logger(__name__)


class Writer(Protocol):
    @property
    def acts(self) -> bool:
        """Whether this writer changes anything (False on a standby)."""

    async def add_finalizer(self, cr: LoraAdapter) -> None: ...

    async def remove_finalizer(self, cr: LoraAdapter) -> bool: ...

    async def write_status(self, cr: LoraAdapter, status: LoraAdapterStatus) -> bool:
        """Write the status if it changed; True when the API server took a new one."""

    async def record_event(self, cr: LoraAdapter, *, type: str, reason: str, action: str,
                           note: str) -> None: ...

    async def stage(self, w: Wanted, credentials: SourceCredentials | None) -> None:
        """Put an adapter's files into the adapter store (raises SourceError)."""

    async def execute(self, actions: Sequence[Action], endpoints: Mapping[PodRef, Endpoint], *,
                      wait: float) -> list[Outcome]:
        """Start the actions; the outcomes of those that finish within `wait` seconds."""

    def collect(self, namespace: str) -> list[Outcome]:
        """Outcomes of earlier actions that finished after their reconcile moved on."""

    def in_flight(self, namespace: str) -> frozenset[tuple[str, str]]:
        """(pod name, adapter) of the namespace's actions still running."""

    async def gc_store(self, namespace: str, keep: set[Path]) -> None: ...

    async def save_ledger(self, namespace: str, ledger: Ledger) -> None: ...


class StandbyWriter:
    """The writer of a replica that does not lead: it writes nothing."""

    acts = False

    async def add_finalizer(self, cr: LoraAdapter) -> None:
        return None

    async def remove_finalizer(self, cr: LoraAdapter) -> bool:
        return False

    async def write_status(self, cr: LoraAdapter, status: LoraAdapterStatus) -> bool:
        return False

    async def record_event(self, cr: LoraAdapter, *, type: str, reason: str, action: str,
                           note: str) -> None:
        return None

    async def stage(self, w: Wanted, credentials: SourceCredentials | None) -> None:
        return None

    async def execute(self, actions: Sequence[Action], endpoints: Mapping[PodRef, Endpoint], *,
                      wait: float) -> list[Outcome]:
        return []

    def collect(self, namespace: str) -> list[Outcome]:
        return []

    def in_flight(self, namespace: str) -> frozenset[tuple[str, str]]:
        return frozenset()

    async def gc_store(self, namespace: str, keep: set[Path]) -> None:
        return None

    async def save_ledger(self, namespace: str, ledger: Ledger) -> None:
        return None


def _finalizer_patch(cr: LoraAdapter, finalizers: list[str] | None) -> list[dict[str, Any]]:
    """A JSON patch setting the finalizers, valid only against the cached resourceVersion."""
    patch: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion",
                                    "value": cr.metadata.resource_version}]
    if finalizers is not None:
        patch.append({"op": "replace", "path": "/metadata/finalizers", "value": finalizers})
    elif cr.metadata.finalizers:
        patch.append({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
    else:
        patch.append({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    return patch


class LeaderWriter:
    """The writer of the leader: every write fenced on still holding the Lease."""

    acts = True

    def __init__(self, kube: KubeClient, *, status: StatusWriter, events: EventRecorder,
                 store: AdapterStore, actuator: Actuator, history: History | None = None,
                 leading: Callable[[], bool] = lambda: True, clock: Clock | None = None) -> None:
        self.kube = kube
        self.status = status
        self.events = events
        self.store = store
        self.actuator = actuator
        self.history = history or History()
        self.leading = leading
        self.clock = clock or RealClock()

    async def _patch_finalizers(self, cr: LoraAdapter, patch: list[dict[str, Any]]) -> bool:
        if not self.leading():
            return False
        try:
            await self.kube.patch(LORA_ADAPTERS, cr.metadata.name, patch,
                                  namespace=cr.metadata.namespace, content_type=JSON_PATCH)
            return True
        except ApiError as exc:  # a stale resourceVersion: the next reconcile tries again
            log.debug("finalizers not changed yet", cr=str(CrRef.of(cr)), error=str(exc)[:200])
            return False

    async def add_finalizer(self, cr: LoraAdapter) -> None:
        await self._patch_finalizers(cr, _finalizer_patch(cr, None))

    async def remove_finalizer(self, cr: LoraAdapter) -> bool:
        rest = [f for f in cr.metadata.finalizers if f != FINALIZER]
        return await self._patch_finalizers(cr, _finalizer_patch(cr, rest))

    async def write_status(self, cr: LoraAdapter, status: LoraAdapterStatus) -> bool:
        if not self.leading():
            return False
        body = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        current = cr.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            return await self.status.write(current, body) is not None
        except ApiError as exc:
            if not exc.not_found:
                log.warning("status write failed", cr=str(CrRef.of(cr)), error=str(exc)[:300])
            return False

    async def record_event(self, cr: LoraAdapter, *, type: str, reason: str, action: str,
                           note: str) -> None:
        if self.leading():
            self.history.event(EventRecord(self.clock.now(), cr.metadata.namespace,
                                           cr.metadata.name, type, reason, note))
            await self.events.record(cr.model_dump(mode="json", by_alias=True), type=type,
                                     reason=reason, action=action, note=note)

    async def stage(self, w: Wanted, credentials: SourceCredentials | None) -> None:
        if self.leading():
            await self.store.stage(w.adapter, namespace=w.cr.metadata.namespace,
                                   cr=w.cr.metadata.name, credentials=credentials)

    async def execute(self, actions: Sequence[Action], endpoints: Mapping[PodRef, Endpoint], *,
                      wait: float) -> list[Outcome]:
        outcomes = await self.actuator.run(actions, endpoints, proceed=self.leading, wait=wait)
        self.history.outcomes(outcomes, self.clock.now())
        return outcomes

    def collect(self, namespace: str) -> list[Outcome]:
        outcomes = self.actuator.collect(namespace)
        self.history.outcomes(outcomes, self.clock.now())
        return outcomes

    def in_flight(self, namespace: str) -> frozenset[tuple[str, str]]:
        return self.actuator.in_flight(namespace)

    async def gc_store(self, namespace: str, keep: set[Path]) -> None:
        if not self.leading():
            return
        try:
            await self.store.gc(keep=keep, namespace=namespace)
        except (OSError, SourceError) as exc:
            log.debug("adapter store gc failed", error=str(exc)[:200])

    async def save_ledger(self, namespace: str, ledger: Ledger) -> None:
        if self.leading():
            await write_ledger(self.store.root, namespace, ledger)


class Writers:
    """Picks the writer of this replica's role; asked once per reconcile."""

    def __init__(self, leader: Writer, *, is_leader: Callable[[], bool]) -> None:
        self.leader = leader
        self.standby: Writer = StandbyWriter()
        self.is_leader = is_leader

    def current(self) -> Writer:
        return self.leader if self.is_leader() else self.standby
