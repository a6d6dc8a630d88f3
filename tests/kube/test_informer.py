"""Shared informers against the real API server: events, restarts, compaction and 410 Gone."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.waiting import eventually as devenv_eventually
from lora_controller.kube.client import KubeClient
from lora_controller.kube.informer import InformerFactory, SharedInformer
from lora_controller.kube.reflector import RELISTS
from lora_controller.kube.resources import LORA_ADAPTERS, NAMESPACES, PODS
from lora_controller.kube.store import label_index

pytestmark = pytest.mark.k8s

JSON = dict[str, Any]


def pod_body(name: str, **labels: str) -> JSON:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:latest"}]},
    }


def cr_body(name: str) -> JSON:
    return {
        "apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": name},
        "spec": {"baseModel": "m", "adapterSource": {"type": "local", "repository": "/a"}},
    }


class Recorder:
    """Records handler calls as (event, key) tuples."""

    def __init__(self, informer: SharedInformer) -> None:
        self.events: list[tuple[str, str]] = []
        self.deleted_objects: list[JSON] = []
        informer.add_event_handler(
            on_add=lambda o: self.events.append(("add", self._key(o))),
            on_update=lambda old, new: self.events.append(("update", self._key(new))),
            on_delete=self._on_delete,
        )

    @staticmethod
    def _key(obj: JSON) -> str:
        return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"

    def _on_delete(self, obj: JSON) -> None:
        self.events.append(("delete", self._key(obj)))
        self.deleted_objects.append(obj)


eventually = functools.partial(devenv_eventually, timeout=15.0)  # informer events come within seconds


async def make_namespace(kube: KubeClient) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
async def started() -> AsyncIterator[list[SharedInformer]]:
    informers: list[SharedInformer] = []
    yield informers
    for inf in informers:
        await inf.stop()


async def test_informer_sees_every_pod_and_loraadapter_event(
    kube: KubeClient, namespace: str, started: list[SharedInformer]
) -> None:
    await kube.create(PODS, pod_body("before", app="vllm"), namespace=namespace)
    factory = InformerFactory(kube)
    pods = factory.informer(PODS, namespace=namespace, label_selector="app=vllm")
    crs = factory.informer(LORA_ADAPTERS, namespace=namespace)
    assert factory.informer(PODS, namespace=namespace, label_selector="app=vllm") is pods, "shared"
    pods.add_indexer("tier", label_index("tier"))
    pod_events, cr_events = Recorder(pods), Recorder(crs)
    factory.start()
    started.extend(factory.informers)
    assert await factory.wait_for_cache_sync(timeout=15)
    assert pod_events.events == [("add", f"{namespace}/before")]

    await kube.create(PODS, pod_body("p1", app="vllm", tier="gold"), namespace=namespace)
    await kube.create(PODS, pod_body("other", app="web"), namespace=namespace)  # not selected
    await kube.patch(PODS, "p1", {"metadata": {"labels": {"tier": "silver"}}}, namespace=namespace)
    await kube.delete(PODS, "before", namespace=namespace)
    await kube.create(LORA_ADAPTERS, cr_body("cr1"), namespace=namespace)
    await kube.patch(LORA_ADAPTERS, "cr1", {"spec": {"baseModel": "m2"}}, namespace=namespace)
    await kube.delete(LORA_ADAPTERS, "cr1", namespace=namespace)

    p1 = f"{namespace}/p1"
    await eventually(lambda: ("delete", f"{namespace}/before") in pod_events.events, what="pod delete")
    await eventually(lambda: ("delete", f"{namespace}/cr1") in cr_events.events, what="cr delete")
    assert pod_events.events[:3] == [("add", f"{namespace}/before"), ("add", p1), ("update", p1)]
    assert all(key != f"{namespace}/other" for _, key in pod_events.events)
    assert cr_events.events == [("add", f"{namespace}/cr1"), ("update", f"{namespace}/cr1"),
                                ("delete", f"{namespace}/cr1")]
    assert pods.store.index_keys("tier", "silver") == [p1]
    assert pods.store.index_keys("tier", "gold") == []
    assert sorted(pods.store.keys()) == [p1]
    # The cache holds API objects without managedFields (the default transform).
    obj = pods.store.get(p1)
    assert obj is not None and "managedFields" not in obj["metadata"]
    assert obj["kind"] == "Pod"


async def test_late_handler_gets_current_content_and_resync_delivers_updates(
    kube: KubeClient, namespace: str, started: list[SharedInformer]
) -> None:
    await kube.create(PODS, pod_body("p"), namespace=namespace)
    inf = SharedInformer(kube, PODS, namespace=namespace)
    inf.start()
    started.append(inf)
    assert await inf.wait_for_cache_sync(timeout=15)
    late = Recorder(inf)
    assert late.events == [("add", f"{namespace}/p")]
    inf.resync()
    assert late.events[-1] == ("update", f"{namespace}/p")


async def test_failing_handler_does_not_stop_the_others(
    kube: KubeClient, namespace: str, started: list[SharedInformer]
) -> None:
    inf = SharedInformer(kube, PODS, namespace=namespace)

    def boom(obj: JSON) -> None:
        raise RuntimeError("handler bug")

    inf.add_event_handler(on_add=boom)
    rec = Recorder(inf)
    inf.start()
    started.append(inf)
    await inf.wait_for_cache_sync(timeout=15)
    await kube.create(PODS, pod_body("p"), namespace=namespace)
    await eventually(lambda: rec.events == [("add", f"{namespace}/p")], what="add after a failing handler")


async def _private_kube(cp: ControlPlane) -> KubeClient:
    return await KubeClient.from_config(kubeconfig=str(cp.kubeconfig), timeout=5)


async def test_catches_up_after_api_server_restart_deletes_included(
    private_control_plane: ControlPlane, started: list[SharedInformer]
) -> None:
    cp = private_control_plane
    kube = await _private_kube(cp)
    try:
        ns = await make_namespace(kube)
        for name in ("a", "b", "c"):
            await kube.create(PODS, pod_body(name), namespace=ns)
        inf = SharedInformer(kube, PODS, namespace=ns)
        rec = Recorder(inf)
        inf.start()
        started.append(inf)
        assert await inf.wait_for_cache_sync(timeout=15)

        await asyncio.to_thread(cp.stop_apiserver)
        await asyncio.sleep(1.0)  # the watch breaks; the reflector backs off
        await asyncio.to_thread(cp.start_apiserver)
        # Changes made right after the restart, while the reflector is still backing off.
        await kube.delete(PODS, "a", namespace=ns)
        await kube.create(PODS, pod_body("d"), namespace=ns)
        await kube.patch(PODS, "b", {"metadata": {"labels": {"changed": "yes"}}}, namespace=ns)

        await eventually(lambda: sorted(inf.store.keys()) == [f"{ns}/b", f"{ns}/c", f"{ns}/d"],
                         timeout=60, what="cache to catch up")
        await eventually(lambda: ("labels" in (inf.store.get(f"{ns}/b") or {}).get("metadata", {})),
                         timeout=30, what="update of b")
        assert ("delete", f"{ns}/a") in rec.events
        assert ("add", f"{ns}/d") in rec.events
    finally:
        await kube.close()


async def test_compaction_gives_410_then_relist_honours_a_delete(
    private_control_plane: ControlPlane, started: list[SharedInformer]
) -> None:
    cp = private_control_plane
    kube = await _private_kube(cp)
    try:
        ns = await make_namespace(kube)
        for name in ("keep", "doomed"):
            await kube.create(PODS, pod_body(name, role=name), namespace=ns)
        inf = SharedInformer(kube, PODS, namespace=ns)
        rec = Recorder(inf)
        inf.start()
        assert await inf.wait_for_cache_sync(timeout=15)
        await inf.stop()  # the reflector remembers its resourceVersion, now going stale
        stale = inf.reflector.last_resource_version

        await kube.delete(PODS, "doomed", namespace=ns)
        await kube.create(PODS, pod_body("new"), namespace=ns)
        # Unrelated writes, so the compaction revision moves well past the stale one.
        for i in range(5):
            await kube.create(PODS, pod_body(f"noise-{i}"), namespace=await make_namespace(kube))
        compacted_at = await asyncio.to_thread(cp.compact_etcd)
        assert compacted_at > int(stale)

        gone_before = RELISTS.labels(str(PODS), "gone")._value.get()
        inf.start()
        started.append(inf)
        await eventually(lambda: sorted(inf.store.keys()) == [f"{ns}/keep", f"{ns}/new"],
                         timeout=30, what="relist after 410")
        assert RELISTS.labels(str(PODS), "gone")._value.get() == gone_before + 1, \
            "the stale watch must fail with 410 Gone and cause exactly one relist"
        assert ("delete", f"{ns}/doomed") in rec.events
        doomed = [o for o in rec.deleted_objects if o["metadata"]["name"] == "doomed"]
        assert doomed and doomed[0]["metadata"]["labels"] == {"role": "doomed"}, \
            "the delete carries the last known object"
    finally:
        await kube.close()


async def test_list_is_paginated(kube: KubeClient, namespace: str, started: list[SharedInformer],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import lora_controller.kube.reflector as reflector_module

    monkeypatch.setattr(reflector_module, "LIST_PAGE_SIZE", 2)
    for i in range(7):
        await kube.create(PODS, pod_body(f"p{i}"), namespace=namespace)
    inf = SharedInformer(kube, PODS, namespace=namespace)
    inf.start()
    started.append(inf)
    assert await inf.wait_for_cache_sync(timeout=15)
    assert len(inf.store) == 7
    assert json.dumps(sorted(inf.store.keys())) == json.dumps(sorted(f"{namespace}/p{i}" for i in range(7)))
