"""End to end: adapters follow demand.

A traffic generator acts as the router: it asks the router API where an adapter is, sends real
completions to those simulated pods (so their `vllm:lora_requests_info` follows the traffic) and
reports what it routed on `POST /v1/usage`. A hot adapter gains replicas within two poll
intervals, a cold lazy adapter drops to zero after its cool-down and comes back on the first ask,
priorities still win under pressure, and every status read along the way tells the truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import Cluster, check_truthful, local_spec
from lora_controller.devenv.controller_process import ControllerProcess

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

POLL = 1.0


truthful = check_truthful


class Router:
    """A router: finds an adapter's pods, sends it completions, reports what it sent."""

    def __init__(self, ctl: ControllerProcess, namespace: str, session: aiohttp.ClientSession):
        self.ctl, self.namespace, self.session = ctl, namespace, session

    async def pods(self, adapter: str, *, ensure: bool = False) -> list[int]:
        query = f"?namespace={self.namespace}" + ("&ensure=true" if ensure else "")
        async with self.session.get(f"{self.ctl.url}/v1/adapters/{adapter}/pods{query}") as r:
            body = await r.json()
        assert r.status == 200, body
        return [p["port"] for p in body["pods"]]

    async def send(self, adapter: str, count: int, window: float) -> None:
        ports = await self.pods(adapter)
        if ports:
            await asyncio.gather(*(self._complete(ports[i % len(ports)], adapter)
                                   for i in range(count)))
        async with self.session.post(f"{self.ctl.url}/v1/usage", json={
                "namespace": self.namespace, "windowSeconds": window,
                "adapters": {adapter: count, "not-an-adapter": 3}}) as r:
            body = await r.json()
        assert r.status == 202 and body == {"accepted": 1, "ignored": 1}, body

    async def _complete(self, port: int, adapter: str) -> None:
        async with self.session.post(f"http://127.0.0.1:{port}/v1/completions", json={
                "model": adapter, "prompt": "hello", "max_tokens": 4}) as r:
            assert r.status == 200, await r.text()


async def until(cluster: Cluster, check: Callable[[], bool], *, timeout: float, what: str,
                resources: tuple[str, ...]) -> float:
    """Wait for `check`, checking every resource's status is truthful meanwhile; seconds taken."""
    started = time.monotonic()
    while not check():
        for name in resources:
            truthful(await cluster.status(name))
        assert time.monotonic() - started < timeout, f"timed out: {what}"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def holders(cluster: Cluster, adapter: str) -> int:
    return sum(adapter in cluster.loaded(p) for p in cluster.pods)


async def test_adapters_follow_demand(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    for i in range(3):
        pod = await cluster.add_pod(f"vllm-{i}", max_loras=1, max_cpu_loras=3)
        pod.sim.config.faults.token_latency_ms = 5
    demand = {"mode": "Demand", "minReplicas": 1, "maxReplicas": 3, "targetRequestsPerSecond": 2}
    await cluster.apply("demand", local_spec(write_adapters(tmp_path / "d", ["hot-1", "warm-1"]),
                                             deploymentConfig={"scaling": demand}))
    await cluster.apply("lazy", local_spec(write_adapters(tmp_path / "l", ["cold-1"]),
                                           deploymentConfig={"loadOnStartup": False, "scaling": {
                                               "mode": "Demand", "minReplicas": 0,
                                               "maxReplicas": 2}}))
    ctl = start_controller("--poll-interval", str(POLL), "--scale-down-delay", "6")
    await ctl.wait_ready()
    names = ("demand", "lazy")
    await cluster.wait_status("demand", lambda s: s.get("phase") == "Ready", what="Ready")
    assert holders(cluster, "hot-1") == 1 and holders(cluster, "cold-1") == 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        router = Router(ctl, cluster.namespace, session)
        traffic = asyncio.create_task(_traffic(router))
        try:
            took = await until(cluster, lambda: holders(cluster, "hot-1") == 3, timeout=6,
                               what="hot-1 on 3 pods", resources=names)
            assert took <= 2 * POLL + 3, took  # two poll intervals, plus a reconcile's work
            code, body = await ctl.get(f"/v1/loraadapters/{cluster.namespace}/demand")
            assert code == 200, body
            hot = next(a for a in body["adapters"] if a["name"] == "hot-1")
            assert hot["demandRps"] > 2 and "maxReplicas 3" in hot["scaling"], hot
            assert "hot-1: 3" in next(c["message"] for c in body["status"]["conditions"]
                                      if c["type"] == "Scaled")

            assert await router.pods("cold-1", ensure=True), "a lazy adapter loads on the ask"
            assert holders(cluster, "cold-1") == 1
            await until(cluster, lambda: holders(cluster, "cold-1") == 0, timeout=30,
                        what="cold-1 scaled to zero after its cool-down", resources=names)
            assert await router.pods("cold-1", ensure=True), "and comes back on the next ask"
            assert holders(cluster, "cold-1") == 1

            await cluster.apply("vip", local_spec(write_adapters(tmp_path / "v", ["vip-1",
                                                                                  "vip-2"]),
                                                  deploymentConfig={"replicas": 3},
                                                  schedulingConfig={"priority": 100}))
            await until(cluster, lambda: holders(cluster, "vip-1") == holders(
                cluster, "vip-2") == 3, timeout=30, what="priority wins under pressure",
                resources=(*names, "vip"))
            await cluster.wait_status("vip", lambda s: s.get("phase") == "Ready", what="vip")
        finally:
            traffic.cancel()
    used = sum(len(cluster.loaded(p)) for p in cluster.pods)
    assert used <= 9, "never more adapters than the pods' slots"
    for name in (*names, "vip"):
        truthful(await cluster.status(name))


async def _traffic(router: Router) -> None:
    while True:
        await router.send("hot-1", 10, 0.5)  # 20 requests per second
        await asyncio.sleep(0.5)
