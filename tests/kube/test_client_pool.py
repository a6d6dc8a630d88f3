"""Watches never starve requests: each watch holds a connection for minutes, one per namespace, and
the requests' bound (`pool_size`) counts requests only. Before, watches were drawn from the same
bounded pool: as many namespaces as connections took them all and every write waited."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import NAMESPACES, PODS

pytestmark = pytest.mark.k8s


async def test_more_watches_than_connections_leave_requests_flowing(
        control_plane: ControlPlane, namespace: str) -> None:
    kube = await KubeClient.from_config(kubeconfig=str(control_plane.kubeconfig), timeout=10,
                                        pool_size=2)
    version = (await kube.list(PODS, namespace=namespace))["metadata"]["resourceVersion"]
    opened = asyncio.Event()
    count = 0

    async def watch() -> None:
        nonlocal count
        stream = kube.watch(PODS, namespace=namespace, resource_version=version, timeout_seconds=60)
        task = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.5)  # the request is sent; no event comes
        count += 1
        if count == 4:
            opened.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stream.aclose()

    watches = [asyncio.create_task(watch()) for _ in range(4)]
    try:
        await asyncio.wait_for(opened.wait(), 10)
        async with asyncio.timeout(5):
            listed = await asyncio.gather(*(kube.list(NAMESPACES) for _ in range(6)))
        assert all(any(n["metadata"]["name"] == namespace for n in page["items"]) for page in listed)
    finally:
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        await kube.close()
