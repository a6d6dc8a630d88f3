"""Status writer and event recorder against the real API server."""

from __future__ import annotations

import pytest

from lora_controller.api.types import API_VERSION
from lora_controller.core.clock import FakeClock
from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.events import EventRecorder
from lora_controller.kube.resources import EVENTS, LORA_ADAPTERS
from lora_controller.kube.status import StatusWriter

pytestmark = pytest.mark.k8s


async def make_cr(kube: KubeClient, ns: str, name: str = "cr") -> dict[str, object]:
    return await kube.create(LORA_ADAPTERS, {
        "apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": name},
        "spec": {"baseModel": "m", "adapterSource": {"type": "local", "repository": "/a"}},
    }, namespace=ns)


async def test_status_written_only_when_changed_and_removed_fields_go(kube: KubeClient, namespace: str) -> None:
    cr = await make_cr(kube, namespace)
    writer = StatusWriter(kube, LORA_ADAPTERS)
    first = {"phase": "Loading", "loadedAdapters": [], "desiredCount": 2,
             "failedAdapters": [{"name": "x", "reason": "r"}]}
    updated = await writer.write(cr, first)
    assert updated is not None and updated["status"] == first
    assert await writer.write(updated, dict(first)) is None, "no write when nothing changed"
    assert writer.writes == 1
    second = {"phase": "Ready", "loadedAdapters": ["a", "b"], "desiredCount": 2}
    updated2 = await writer.write(updated, second)
    assert updated2 is not None
    assert updated2["status"] == second, "failedAdapters owned by us and now absent is removed"
    assert updated2["spec"] == cr["spec"]  # type: ignore[index]
    fetched = await kube.get(LORA_ADAPTERS, "cr", namespace=namespace)
    assert fetched["status"] == second


async def test_status_of_a_deleted_object_raises_not_found(kube: KubeClient, namespace: str) -> None:
    cr = await make_cr(kube, namespace)
    await kube.delete(LORA_ADAPTERS, "cr", namespace=namespace)
    with pytest.raises(ApiError) as err:
        await StatusWriter(kube, LORA_ADAPTERS).write(cr, {"phase": "Ready"})
    assert err.value.not_found


async def test_repeated_events_are_aggregated_into_a_series(kube: KubeClient, namespace: str) -> None:
    cr = await make_cr(kube, namespace)
    clock = FakeClock()
    rec = EventRecorder(kube, instance="test-0", clock=clock, series_interval=30)
    for _ in range(10):
        await rec.record(cr, type="Warning", reason="LoadFailed", action="Load",
                         note="adapter a: rank 64 exceeds max-lora-rank 16 on pod vllm-0")
    await rec.record(cr, type="Normal", reason="Loaded", action="Load", note="adapter b on vllm-0")
    events = (await kube.list(EVENTS, namespace=namespace))["items"]
    assert len(events) == 2, "ten identical events make one Event"
    assert rec.created == 2 and rec.patched == 0
    await clock.advance(31)
    await rec.record(cr, type="Warning", reason="LoadFailed", action="Load",
                     note="adapter a: rank 64 exceeds max-lora-rank 16 on pod vllm-0")
    events = {e["reason"]: e for e in (await kube.list(EVENTS, namespace=namespace))["items"]}
    assert events["LoadFailed"]["series"]["count"] == 11
    assert events["LoadFailed"]["regarding"]["name"] == "cr"
    assert events["LoadFailed"]["regarding"]["kind"] == "LoraAdapter"
    assert events["LoadFailed"]["reportingController"] == "production-stack.vllm-project/lora-controller"
    assert events["Loaded"]["type"] == "Normal" and "series" not in events["Loaded"]


async def test_event_recorder_never_raises(kube: KubeClient) -> None:
    rec = EventRecorder(kube, instance="test-0")
    ghost = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "p", "namespace": "no-such-namespace-xyz", "uid": "u"}}
    await rec.record(ghost, type="Normal", reason="R", action="A", note="n")  # 404 namespace: logged
    assert rec.created == 0
