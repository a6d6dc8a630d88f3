"""The controller's cache of the cluster: LoraAdapters as parsed models, and the pods it follows.

LoraAdapters come from their informers' stores and are parsed once per resourceVersion (parsing
thousands of resources on every reconcile would dominate it); the parsed objects are shared, so
treat them as read-only. The parsing happens as an object arrives (`keep_parsed`, the informers'
transform), and the informer's store keeps only the metadata its event handlers read: one copy of
each resource in memory (the parsed one), not two. Pods are kept as `TargetPod` (what the controller reads from a Pod),
indexed by namespace, so one namespace's pods are found without scanning the fleet.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from lora_controller.api.types import LoraAdapter
from lora_controller.kube.informer import SharedInformer
from lora_controller.reconcile.pods import TargetPod
from lora_controller.reconcile.refs import CrRef, PodRef

JSON = dict[str, Any]
# What the event handlers read of a LoraAdapter (causes.py) and what keys it in the store.
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "deletionTimestamp",
                  "finalizers")


_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


def _share_fields_sets(model: BaseModel) -> None:
    """Give every model of a parsed resource the one `__pydantic_fields_set__` of its shape.

    pydantic keeps, in each model instance, the set of the fields given to it: a resource is some
    twenty models (its conditions, its pod assignments), and their sets were 8.4 MiB of the 1,000
    resources of bench/scale.py, the largest single item of the controller's memory. Models of the
    same shape get the same set object; nothing here reads or changes these sets (no
    `exclude_unset` dump; a `model_copy` copies the set first)."""
    stack: list[Any] = [model]
    while stack:
        m = stack.pop()
        if isinstance(m, BaseModel):
            own = m.__pydantic_fields_set__
            shared = _FIELDS_SETS.setdefault(frozenset(own), own)
            if shared is not own:
                object.__setattr__(m, "__pydantic_fields_set__", shared)
            stack.extend(m.__dict__.values())
        elif isinstance(m, list | tuple):
            stack.extend(m)
        elif isinstance(m, dict):
            stack.extend(m.values())


class ClusterCache:
    def __init__(self) -> None:
        self.cr_informers: list[SharedInformer] = []
        self._parsed: dict[CrRef, tuple[str, LoraAdapter]] = {}  # ref -> (resourceVersion, cr)
        self._pods: dict[str, dict[str, TargetPod]] = {}  # namespace -> pod name -> pod

    # -- LoraAdapters ----------------------------------------------------------------------------
    def crs(self, namespace: str | None = None) -> list[LoraAdapter]:
        """The cached resources of a namespace (or all), sorted by namespace and name."""
        out: list[LoraAdapter] = []
        for inf in self.cr_informers:
            objs = inf.store.by_index("namespace", namespace) if namespace else inf.store.list()
            out.extend(self._parse(o) for o in objs)
        return sorted(out, key=lambda c: (c.metadata.namespace, c.metadata.name))

    def cr(self, ref: CrRef) -> LoraAdapter | None:
        for inf in self.cr_informers:
            obj = inf.store.get(str(ref))
            if obj is not None:
                return self._parse(obj)
        return None

    def forget_cr(self, obj: JSON) -> None:
        meta = obj.get("metadata") or {}
        self._parsed.pop(CrRef(str(meta.get("namespace", "")), str(meta.get("name", ""))), None)

    def keep_parsed(self, obj: JSON) -> JSON:
        """The LoraAdapter informers' transform: parse now, keep the metadata in the store."""
        meta = obj.get("metadata") or {}
        try:
            cr = LoraAdapter.model_validate(obj)
        except ValidationError:  # kept whole: parsing fails again where it is read, and says why
            meta.pop("managedFields", None)
            return obj
        _share_fields_sets(cr)
        ref = CrRef(str(meta.get("namespace", "")), str(meta.get("name", "")))
        self._parsed[ref] = (str(meta.get("resourceVersion", "")), cr)
        return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta}}

    def _parse(self, obj: JSON) -> LoraAdapter:
        meta = obj.get("metadata") or {}
        ref = CrRef(str(meta.get("namespace", "")), str(meta.get("name", "")))
        version = str(meta.get("resourceVersion", ""))
        hit = self._parsed.get(ref)
        if hit is not None and hit[0] == version:
            return hit[1]
        cr = LoraAdapter.model_validate(obj)
        self._parsed[ref] = (version, cr)
        return cr

    @property
    def synced(self) -> bool:
        return all(inf.has_synced() for inf in self.cr_informers)

    def namespaces(self) -> set[str]:
        """Namespaces holding at least one LoraAdapter (from the informers' index, no parsing)."""
        return {ns for inf in self.cr_informers for ns in inf.store.index_values("namespace")}

    # -- pods ------------------------------------------------------------------------------------
    def pods(self, namespace: str) -> list[TargetPod]:
        """The namespace's pods, sorted by name."""
        pods = self._pods.get(namespace)
        return [pods[name] for name in sorted(pods)] if pods else []

    def all_pods(self) -> list[TargetPod]:
        return [p for ns in sorted(self._pods) for p in self.pods(ns)]

    def pod(self, ref: PodRef) -> TargetPod | None:
        pods = self._pods.get(ref.namespace)
        return pods.get(ref.name) if pods else None

    def put_pod(self, pod: TargetPod) -> TargetPod | None:
        """Remember a pod; returns what was known of it before."""
        pods = self._pods.setdefault(pod.namespace, {})
        before = pods.get(pod.name)
        pods[pod.name] = pod
        return before

    def drop_pod(self, ref: PodRef) -> None:
        pods = self._pods.get(ref.namespace)
        if pods is not None:
            pods.pop(ref.name, None)
            if not pods:
                del self._pods[ref.namespace]
