"""LoraAdapters are parsed as they arrive (the informers' transform): the informer's store keeps
their metadata only, the cache answers the whole resource, status included, from one parsed copy."""

from __future__ import annotations

from typing import Any

from lora_controller.api.types import API_VERSION
from lora_controller.kube.store import Store
from lora_controller.reconcile.cache import ClusterCache
from lora_controller.reconcile.refs import CrRef


class _Informer:
    def __init__(self) -> None:
        self.store = Store()

    def has_synced(self) -> bool:
        return True


def resource(name: str, version: str) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
    return {
        "apiVersion": API_VERSION, "kind": "LoraAdapter",
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "generation": 1,
                     "resourceVersion": version, "finalizers": ["f"],
                     "managedFields": [{"manager": "kubectl"}], "annotations": {"a": "b"}},
        "spec": {"baseModel": "m", "adapterSource": {"type": "local", "repository": "/a"}},
        "status": {"phase": "Ready", "conditions": [condition, {**condition, "type": "Degraded"}],
                   "loadedAdapters": ["x"], "podAssignments": [{"pod": "p", "adapters": ["x"]}]},
    }


def test_the_store_keeps_metadata_and_the_cache_the_whole_resource() -> None:
    cache, informer = ClusterCache(), _Informer()
    cache.cr_informers.append(informer)  # type: ignore[arg-type]
    for name in ("a", "b"):
        informer.store.upsert(cache.keep_parsed(resource(name, "7")))
    kept = informer.store.get("ns/a")
    assert kept is not None and set(kept) == {"apiVersion", "kind", "metadata"}
    assert kept["metadata"]["resourceVersion"] == "7" and kept["metadata"]["finalizers"] == ["f"]
    a, b = cache.cr(CrRef("ns", "a")), cache.cr(CrRef("ns", "b"))
    assert a is not None and b is not None and a.status is not None and b.status is not None
    assert a.status.loaded_adapters == ["x"] and a.metadata.annotations == {"a": "b"}
    assert [c.type for c in a.status.conditions] == ["Ready", "Degraded"]
    assert [c.metadata.name for c in cache.crs("ns")] == ["a", "b"]
    # Models of one shape share their fields set; a copy still works on its own.
    assert a.status.conditions[0].__pydantic_fields_set__ is \
        b.status.conditions[1].__pydantic_fields_set__
    copied = a.metadata.model_copy(update={"name": "c"})
    assert copied.name == "c" and a.metadata.name == "a"


def test_a_resource_that_does_not_parse_is_kept_whole() -> None:
    cache = ClusterCache()
    broken = resource("a", "1")
    broken["spec"] = {"baseModel": 5}
    kept = cache.keep_parsed(broken)
    assert kept["spec"] == {"baseModel": 5} and "managedFields" not in kept["metadata"]
