"""Fault injection, end to end: vLLM faults (500s, hangs, refusals, unreachable pods), the
controller SIGKILLed over and over, and a source that goes down."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from lora_controller.devenv.adapters import adapter_files, write_adapters
from lora_controller.devenv.cluster import Cluster, local_spec
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.kube.resources import SECRETS
from tests.e2e.test_sources import controller_env, make_secret
from tests.sources.s3_server import MotoS3

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def load_requests(cluster: Cluster, pod: str) -> int:
    return cluster.pods[pod].sim.request_counts.get("POST /v1/load_lora_adapter", 0)


async def test_vllm_faults_give_reasons_bounded_retries_then_convergence(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    names = [f"lora-{i}" for i in range(6)]
    root = write_adapters(tmp_path / "a", names)
    await cluster.add_pod("vllm-flaky", max_cpu_loras=8)
    await cluster.add_pod("vllm-hangs", max_cpu_loras=8)
    await cluster.add_pod("vllm-refuses", max_cpu_loras=8)
    await cluster.add_pod("vllm-slow", max_cpu_loras=8, load_latency_ms=400)
    cluster.pods["vllm-flaky"].sim.faults.error_rate_500 = 0.2
    cluster.pods["vllm-hangs"].sim.faults.hang_rate = 0.3
    cluster.pods["vllm-hangs"].sim.faults.hang_seconds = 3
    cluster.pods["vllm-refuses"].sim.faults.refuse_loads = True
    ctl = start_controller("--vllm-timeout", "1", "--load-timeout", "1.5")
    await ctl.wait_ready()
    await cluster.apply("faults", local_spec(root))
    status = await cluster.wait_status(
        "faults", lambda s: s.get("phase") == "Partial" and all(
            "vllm-refuses" in f["reason"] for f in s.get("failedAdapters", [])) and len(
            s.get("failedAdapters", [])) == 6, timeout=60, what="Partial with the refusing pod named")
    assert "load on pod vllm-refuses failed" in status["failedAdapters"][0]["reason"]
    # Retries to the refusing pod back off: counted over 20 s, far fewer than a 2 s loop's.
    before = load_requests(cluster, "vllm-refuses")
    await asyncio.sleep(20)
    retried = load_requests(cluster, "vllm-refuses") - before
    assert retried <= 6 * 6, f"{retried} load requests in 20 s: not backing off"
    # The other pods converged despite 500s, hangs and slow loads.
    for pod in ("vllm-flaky", "vllm-hangs", "vllm-slow"):
        assert set(cluster.loaded(pod)) == set(names), pod
    # Faults gone: everything converges, with no manual action.
    for pod in cluster.pods.values():
        pod.sim.faults.update({"error_rate_500": 0.0, "hang_rate": 0.0, "refuse_loads": False})
    await cluster.wait_status("faults", lambda s: s.get("phase") == "Ready", timeout=90,
                              what="Ready once the faults are gone")
    for pod in cluster.pods:
        assert set(cluster.loaded(pod)) == set(names)


async def test_unreachable_pod_is_reported_then_repaired(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    root = write_adapters(tmp_path / "a", ["lora-a", "lora-b"])
    await cluster.add_pod("vllm-0")
    await cluster.add_pod("vllm-1")
    ctl = start_controller()
    await ctl.wait_ready()
    await cluster.apply("x", local_spec(root))
    await cluster.wait_status("x", lambda s: s.get("phase") == "Ready", what="Ready")
    gone = cluster.pods["vllm-1"]
    await cluster.fleet.detach(gone.sim)  # connections refused from now on
    status = await cluster.wait_status(
        "x", lambda s: any("vllm-1" in f["reason"] for f in s.get("failedAdapters", [])),
        timeout=30, what="the unreachable pod in status")
    assert status["phase"] == "Partial"
    gone.sim.adapters.clear()  # it comes back as a fresh vLLM
    await cluster.fleet.attach(gone.sim, host="127.0.0.1", port=gone.port)
    await cluster.wait_status("x", lambda s: s.get("phase") == "Ready", timeout=60,
                              what="Ready once the pod answers again")
    assert set(cluster.loaded("vllm-1")) == {"lora-a", "lora-b"}


async def test_controller_killed_twenty_times_leaves_the_right_state(
    cluster: Cluster, tmp_path: Path, start_controller: Callable[..., ControllerProcess]
) -> None:
    names = [f"lora-{i:02d}" for i in range(16)]
    root = write_adapters(tmp_path / "a", names)
    await cluster.add_pods(["vllm-0", "vllm-1", "vllm-2"], max_cpu_loras=20, load_latency_ms=80)
    await cluster.apply("x", local_spec(root, deploymentConfig={
        "replicas": 2, "podSelector": {"matchLabels": {"lora-enabled": "true"}}}))
    rng = random.Random(42)
    for round_ in range(20):
        ctl = start_controller("--load-concurrency", "2", name=f"round-{round_}")
        await asyncio.sleep(rng.uniform(0.8, 2.5))
        if round_ == 10:  # change what is wanted half way: some loaded adapters become unwanted
            await cluster.apply("x", local_spec(root, adapterSource={
                "type": "local", "repository": str(root), "pattern": "lora-0*"},
                deploymentConfig={"replicas": 2,
                                  "podSelector": {"matchLabels": {"lora-enabled": "true"}}}))
        ctl.stop(signal.SIGKILL)
    final = start_controller("--load-concurrency", "2", name="final")
    await final.wait_ready()
    wanted = {n for n in names if n.startswith("lora-0")}
    status = await cluster.wait_status(
        "x", lambda s: s.get("phase") == "Ready" and s.get("observedGeneration") == 2,
        timeout=120, what="Ready after 20 kills")
    assert set(status["loadedAdapters"]) == wanted
    counts: dict[str, int] = {}
    for pod in cluster.pods:
        loaded = set(cluster.loaded(pod))
        assert loaded <= wanted, f"orphan adapters on {pod}: {loaded - wanted}"
        for name in loaded:
            counts[name] = counts.get(name, 0) + 1
    assert counts == {n: 2 for n in wanted}


async def test_source_down_keeps_adapters_then_recovers(
    cluster: Cluster, start_controller: Callable[..., ControllerProcess]
) -> None:
    s3 = MotoS3.start()
    try:
        bucket = s3.bucket("down")
        s3.put_adapter(bucket, "p/s3-a", adapter_files(base_model="tiny-llama", seed=1))
        await make_secret(cluster, "creds", {"AWS_ACCESS_KEY_ID": s3.access_key,
                                             "AWS_SECRET_ACCESS_KEY": s3.secret_key})
        await cluster.add_pod("vllm-0")
        ctl = start_controller("--discovery-ttl", "1", env=controller_env())
        await ctl.wait_ready()
        await cluster.apply("s3", {
            "baseModel": "tiny-llama",
            "adapterSource": {"type": "s3", "repository": f"s3://{bucket}/p", "endpoint": s3.endpoint,
                              "region": "us-east-1"},
            "credentialsSecretRef": {"name": "creds"},
            "deploymentConfig": {"podSelector": {"matchLabels": {"lora-enabled": "true"}}}})
        await cluster.wait_status("s3", lambda s: s.get("phase") == "Ready", timeout=60, what="Ready")
        s3.server.stop()
        status = await cluster.wait_status(
            "s3", lambda s: any(c["type"] == "Degraded" and c["reason"] == "SourceUnreachable"
                                for c in s.get("conditions", [])), timeout=60, what="Degraded")
        assert status["phase"] == "Partial"
        assert status["loadedAdapters"] == ["s3-a"], "nothing is lost while the source is down"
        assert "s3-a" in cluster.loaded("vllm-0")
        s3.server.start()
        await cluster.wait_status("s3", lambda s: s.get("phase") == "Ready", timeout=120,
                                  what="Ready once the source is back")
        assert await cluster.kube.get(SECRETS, "creds", namespace=cluster.namespace)
    finally:
        s3.stop()
