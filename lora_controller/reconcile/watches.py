"""The per-namespace watches: one Pod informer and, while needed, one Secret informer per namespace.

The Pod informer of a namespace watches every pod there, not only those some podSelector matches:
a pod relabelled out of every selector must still be seen, so that the controller unloads what it
put there, and a deleted resource keeps its finalizer until that is done. (Filtering by labels on
the API server turns a relabel into a delete event, indistinguishable from the pod going away.)
Selectors are applied in memory. The cache keeps only the fields of a Pod the controller reads
(`pods.pod_fields`, the informer's transform). The Secret informer runs while a resource of the
namespace references a Secret. One watch each, however many resources: HTTP/1.1 watches each hold a
connection to the API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from lora_controller.api.types import LoraAdapter
from lora_controller.kube.informer import InformerFactory, SharedInformer
from lora_controller.kube.resources import PODS, SECRETS
from lora_controller.reconcile.pods import pod_fields

JSON = dict[str, Any]
Handler = Callable[[JSON], None]


class NamespaceWatches:
    def __init__(self, factory: InformerFactory, *, on_pod: Handler, on_pod_gone: Handler,
                 on_secret: Handler) -> None:
        self.factory = factory
        self.on_pod = on_pod
        self.on_pod_gone = on_pod_gone
        self.on_secret = on_secret
        self.pods: dict[str, SharedInformer] = {}  # namespace -> its pod informer
        self.secrets: dict[str, SharedInformer] = {}
        self._bg: set[asyncio.Task[None]] = set()

    def sync(self, namespace: str, crs: Sequence[LoraAdapter]) -> None:
        """Make the namespace's watches fit its resources (cheap when nothing changed)."""
        if crs and namespace not in self.pods:
            inf = self.factory.informer(PODS, namespace=namespace, transform=pod_fields)
            inf.add_event_handler(on_add=self.on_pod,
                                  on_update=lambda _old, new: self.on_pod(new),
                                  on_delete=self.on_pod_gone)
            self.pods[namespace] = inf
            inf.start()
        self._want_secrets(namespace, any(c.spec.credentials_secret_ref is not None for c in crs))

    def synced(self, namespace: str) -> bool:
        pods, secrets = self.pods.get(namespace), self.secrets.get(namespace)
        return (pods is None or pods.has_synced()) and (secrets is None or secrets.has_synced())

    def secret(self, namespace: str, name: str) -> JSON | None:
        inf = self.secrets.get(namespace)
        return inf.store.get(f"{namespace}/{name}") if inf else None

    def _want_secrets(self, namespace: str, needed: bool) -> None:
        inf = self.secrets.get(namespace)
        if needed and inf is None:
            inf = self.factory.informer(SECRETS, namespace=namespace)
            inf.add_event_handler(on_add=self.on_secret,
                                  on_update=lambda _old, new: self.on_secret(new),
                                  on_delete=self.on_secret)
            self.secrets[namespace] = inf
            inf.start()
        elif not needed and inf is not None:
            del self.secrets[namespace]
            self._background(self.factory.remove(inf))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
