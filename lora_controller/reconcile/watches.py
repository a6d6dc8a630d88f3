"""The per-namespace watches: one Pod informer and, while needed, one Secret informer per namespace.

The Pod informer of a namespace selects by the labels every resource there requires (so it holds
every pod any selector can match, and few others); when the resources change, a new informer
replaces the old one once it has synced, and pods only the old one held are reported gone. The
Secret informer runs while a resource of the namespace references a Secret. One watch each,
however many resources: HTTP/1.1 watches each hold a connection to the API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from lora_controller.api.types import LoraAdapter
from lora_controller.kube.informer import InformerFactory, SharedInformer
from lora_controller.kube.resources import PODS, SECRETS

JSON = dict[str, Any]
Handler = Callable[[JSON], None]


def pod_label_selector(crs: Sequence[LoraAdapter]) -> str | None:
    """The labels every resource's podSelector requires, as a label selector (None: no filter)."""
    common: dict[str, str] | None = None
    for cr in crs:
        selector = cr.spec.deployment().pod_selector
        labels = dict((selector.match_labels or {}) if selector else {})
        common = labels if common is None else {
            k: v for k, v in common.items() if labels.get(k) == v}
    wanted = ",".join(f"{k}={v}" for k, v in sorted((common or {}).items()))
    return wanted or None


class NamespaceWatches:
    def __init__(self, factory: InformerFactory, *, on_pod: Handler, on_pod_gone: Handler,
                 on_secret: Handler) -> None:
        self.factory = factory
        self.on_pod = on_pod
        self.on_pod_gone = on_pod_gone
        self.on_secret = on_secret
        self.pods: dict[str, SharedInformer] = {}  # namespace -> its pod informer
        self._replacing: dict[str, SharedInformer] = {}  # a new pod informer, not yet synced
        self.secrets: dict[str, SharedInformer] = {}
        self._bg: set[asyncio.Task[None]] = set()

    def sync(self, namespace: str, crs: Sequence[LoraAdapter]) -> None:
        """Make the namespace's watches fit its resources (cheap when nothing changed)."""
        if crs:
            self._want_pods(namespace, pod_label_selector(crs))
        self._swap_when_synced(namespace)
        self._want_secrets(namespace, any(c.spec.credentials_secret_ref is not None for c in crs))

    def synced(self, namespace: str) -> bool:
        pods, secrets = self.pods.get(namespace), self.secrets.get(namespace)
        return (pods is None or pods.has_synced()) and (secrets is None or secrets.has_synced())

    def secret(self, namespace: str, name: str) -> JSON | None:
        inf = self.secrets.get(namespace)
        return inf.store.get(f"{namespace}/{name}") if inf else None

    def holds_pod(self, namespace: str, name: str) -> bool:
        """Whether the namespace's current pod watch holds this pod."""
        inf = self.pods.get(namespace)
        return inf is not None and inf.store.get(f"{namespace}/{name}") is not None

    def _want_pods(self, namespace: str, selector: str | None) -> None:
        current, pending = self.pods.get(namespace), self._replacing.get(namespace)
        if current is not None and current.label_selector == selector:
            if pending is not None:  # the resources went back to the current selector
                del self._replacing[namespace]
                self._background(self.factory.remove(pending))
            return
        if pending is not None:
            if pending.label_selector == selector:
                return
            self._background(self.factory.remove(pending))
        inf = self.factory.informer(PODS, namespace=namespace, label_selector=selector)
        inf.add_event_handler(on_add=self.on_pod, on_update=lambda _old, new: self.on_pod(new),
                              on_delete=self.on_pod_gone)
        inf.start()
        if current is None:
            self.pods[namespace] = inf
        else:
            self._replacing[namespace] = inf

    def _swap_when_synced(self, namespace: str) -> None:
        pending = self._replacing.get(namespace)
        if pending is None or not pending.has_synced():
            return
        old = self.pods[namespace]
        self.pods[namespace] = pending
        del self._replacing[namespace]
        for key, obj in old.store.items():
            if pending.store.get(key) is None:
                self.on_pod_gone(obj)
        self._background(self.factory.remove(old))

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
