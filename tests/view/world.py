"""The demo's world for the view, plugin and Prometheus tests: the demo's pods and resources, plus
one resource that fails and one whose base model is hostile markup.

As in the demo (lora_controller/devenv/demo.py): three simulated vLLM pods serving tiny-llama
(`dev sim-pods`'s code), the demo's two LoraAdapters (local adapters with 2 replicas; S3 adapters
from a moto server, higher priority), and the controller as its own process. Added: `big-rank`,
whose adapter's rank is over every pod's --max-lora-rank (the scheduler's reason, with figures),
and `hostile`, whose base model is an HTML payload that would set `window.__pwned` if any page
ever treated it as markup (no pod serves it: its reason quotes it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_controller.devenv.adapters import write_adapter
from lora_controller.devenv.cluster import Cluster, wait_all_ready
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.demo import (
    BUCKET,
    MODEL,
    S3_ADAPTERS,
    fill_bucket,
    resources,
    start_moto,
)
from lora_controller.devenv.sim_pods_command import SimPodsRequest, start_sim_pods
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import SECRETS
from lora_controller.simulator.fleet import SimulatedFleet

HOSTILE = '"><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
TOKEN = "view-token-5f2c9a7e31b84d06"
GOOD = ("local-adapters", "s3-adapters")


@dataclass
class World:
    namespace: str
    cluster: Cluster
    ctl: ControllerProcess
    workdir: Path
    kubeconfig: Path

    @property
    def kube(self) -> KubeClient:
        return self.cluster.kube


def extra_resources(workdir: Path) -> dict[str, dict[str, Any]]:
    big = workdir / "big-rank"
    write_adapter(big / "huge-lora", base_model=MODEL, r=64)
    hostile = workdir / "hostile"
    write_adapter(hostile / "odd-lora", base_model=MODEL)
    selector = {"matchLabels": {"lora-enabled": "true"}}
    return {
        "big-rank": {"baseModel": MODEL, "adapterSource": {"type": "local", "repository": str(big)},
                     "deploymentConfig": {"podSelector": selector}},
        "hostile": {"baseModel": HOSTILE,
                    "adapterSource": {"type": "local", "repository": str(hostile)},
                    "deploymentConfig": {"podSelector": selector}},
    }


@contextlib.asynccontextmanager
async def demo_world(cp: ControlPlane, workdir: Path, *, token: str | None = None,
                     leader_elect: bool = False) -> AsyncIterator[World]:
    """The world up, the demo's resources Ready and the failing ones reported; all torn down.
    With `leader_elect`, the controller leads through the Lease `lora-controller` of the world's
    namespace (as the chart runs it), else it runs with --no-leader-elect (as the demo does)."""
    ns = f"demo-{uuid.uuid4().hex[:8]}"
    moto, endpoint = start_moto()
    kube = await KubeClient.from_config(kubeconfig=str(cp.kubeconfig), timeout=10)
    ctl: ControllerProcess | None = None
    try:
        fill_bucket(endpoint, BUCKET, S3_ADAPTERS)
        async with SimulatedFleet() as fleet:
            cluster = await start_sim_pods(kube, fleet, SimPodsRequest(
                namespace=ns, count=3, model=MODEL, prefix="vllm-tiny",
                adapters_dir=workdir / "adapters", max_loras=2, max_cpu_loras=6,
                load_latency_ms=50, nodes=True), say=lambda _: None)
            extra = ["--router-token-file", _token_file(workdir, token)] if token else []
            ctl = ControllerProcess(
                cp, namespace=ns, store=workdir / "store", log_path=workdir / "controller.log",
                extra=[*(["--lease-namespace", ns] if leader_elect else ["--no-leader-elect"]),
                       *extra], poll_interval=1, resync=None,
                log_level="info", env={"AWS_EC2_METADATA_DISABLED": "true"}).start()
            await ctl.wait_ready()
            await kube.create(SECRETS, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials"},
                "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(b"demo").decode(),
                         "AWS_SECRET_ACCESS_KEY": base64.b64encode(b"demo-secret").decode()}},
                namespace=ns)
            specs = {**resources(workdir / "adapters", endpoint), **extra_resources(workdir)}
            for name, spec in specs.items():
                await cluster.apply(name, spec)
            await wait_all_ready(kube, len(GOOD), namespace=ns, timeout=60, poll=0.2)
            for name in ("big-rank", "hostile"):
                await cluster.wait_status(name, lambda s: s.get("phase") == "Failed",
                                          what="Failed")
            yield World(ns, cluster, ctl, workdir, cp.kubeconfig)
            ctl.stop()
            await cluster.delete_pods()
    finally:
        if ctl is not None:
            ctl.kill()
        await kube.close()
        moto.stop()


def _token_file(workdir: Path, token: str) -> str:
    path = workdir / "router-token"
    path.write_text(token + "\n")
    return str(path)


async def until(check: Any, timeout: float = 30.0, what: str = "") -> Any:
    """Poll a blocking `check()` (a browser query, a subprocess) in a thread, so that the event
    loop, which serves the simulated pods, keeps running; returns its first true value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
