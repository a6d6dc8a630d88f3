"""End to end with remote sources: S3 (moto server) and HuggingFace (local hub), several at once,
credentials from Secrets, staging into the adapter store, and source failures that heal."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lora_controller.devenv.adapters import adapter_files, under, write_adapter
from lora_controller.devenv.cluster import Cluster
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.kubectl import kubectl
from lora_controller.kube.resources import SECRETS
from tests.sources.hub_server import HubServer
from tests.sources.s3_server import MotoS3
from tests.support.secrets import credential

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    server = MotoS3.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def hub() -> AsyncIterator[HubServer]:
    server = HubServer(page_size=2)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def controller_env(hub: HubServer | None = None) -> dict[str, str]:
    env = {"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN"):
        os.environ.pop(var, None)
    return env


async def make_secret(cluster: Cluster, name: str, data: dict[str, str]) -> None:
    await cluster.kube.create(SECRETS, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }, namespace=cluster.namespace)


def selector() -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"lora-enabled": "true"}}}


async def test_s3_huggingface_and_local_at_once(
    cluster: Cluster, s3: MotoS3, hub: HubServer, adapter_dir: Path, tmp_path: Path,
    start_controller: Callable[..., ControllerProcess],
) -> None:
    bucket = s3.bucket("lora")
    for i, name in enumerate(["s3-one", "s3-two"]):
        s3.put_adapter(bucket, f"tiny/{name}", adapter_files(base_model="tiny-llama", seed=10 + i))
    hub.add_repo("org/adapters", {**under("sql-lora", adapter_files(base_model="tiny-llama", seed=20)),
                                  **under("chat-lora", adapter_files(base_model="tiny-llama", seed=21))},
                 private=True, tokens=[credential("hf-secret-token")])
    write_adapter(adapter_dir / "local-one", base_model="tiny-llama", seed=30)
    await make_secret(cluster, "s3-creds", {"AWS_ACCESS_KEY_ID": s3.access_key,
                                            "AWS_SECRET_ACCESS_KEY": s3.secret_key})
    await make_secret(cluster, "hf-creds", {"token": "hf-secret-token"})
    for i in range(2):
        await cluster.add_pod(f"vllm-{i}", max_cpu_loras=8)
    store = tmp_path / "store"
    ctl = start_controller(env=controller_env(hub), store=store)
    await ctl.wait_ready()
    await cluster.apply("from-s3", {
        "baseModel": "tiny-llama", "deploymentConfig": selector(),
        "adapterSource": {"type": "s3", "repository": f"s3://{bucket}/tiny", "endpoint": s3.endpoint,
                          "region": "us-east-1"},
        "credentialsSecretRef": {"name": "s3-creds"}})
    await cluster.apply("from-hf", {
        "baseModel": "tiny-llama", "deploymentConfig": selector(),
        "adapterSource": {"type": "huggingface", "repository": "org/adapters"},
        "credentialsSecretRef": {"name": "hf-creds", "keys": {"HF_TOKEN": "token"}}})
    await cluster.apply("from-local", {
        "baseModel": "tiny-llama", "deploymentConfig": selector(),
        "adapterSource": {"type": "local", "repository": str(adapter_dir)}})
    for name, expected in [("from-s3", ["s3-one", "s3-two"]), ("from-hf", ["chat-lora", "sql-lora"]),
                           ("from-local", ["local-one"])]:
        status = await cluster.wait_status(name, lambda s: s.get("phase") == "Ready", timeout=60,
                                           what=f"{name} Ready")
        assert sorted(status["loadedAdapters"]) == expected
    for pod in cluster.pods:
        loaded = cluster.loaded(pod)
        assert set(loaded) == {"s3-one", "s3-two", "sql-lora", "chat-lora", "local-one"}
        for name in ("s3-one", "s3-two", "sql-lora", "chat-lora"):
            path = Path(loaded[name])
            assert path.is_relative_to(store / cluster.namespace), path
            assert (path / "adapter_model.safetensors").is_file()
        assert loaded["local-one"] == str(adapter_dir / "local-one")
    # No secret value leaked into the controller's log or the resources' status.
    log = ctl.log_path.read_text()
    for secret in ("hf-secret-token", s3.secret_key):
        assert secret not in log
        for name in ("from-s3", "from-hf"):
            assert secret not in str(await cluster.cr(name))


async def test_missing_credentials_then_fixed(
    cluster: Cluster, hub: HubServer, start_controller: Callable[..., ControllerProcess],
    control_plane: ControlPlane,
) -> None:
    hub.add_repo("org/private", under("p-lora", adapter_files(base_model="tiny-llama")),
                 private=True, tokens=[credential("tok-123")])
    await cluster.add_pod("vllm-0")
    ctl = start_controller(env=controller_env(hub))
    await ctl.wait_ready()
    await cluster.apply("hf", {
        "baseModel": "tiny-llama", "deploymentConfig": selector(),
        "adapterSource": {"type": "huggingface", "repository": "org/private"},
        "credentialsSecretRef": {"name": "hf-token"}})
    status = await cluster.wait_status("hf", lambda s: s.get("phase") == "Failed", what="Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "CredentialsMissing"
    assert "hf-token" in ready["message"]
    row = kubectl(control_plane, "get", "loraadapter", "hf", "-n", cluster.namespace,
                  "--no-headers").stdout.split()
    assert row[2:6] == ["Failed", "0", "0", "CredentialsMissing"], \
        "a source that fails as a whole says why in `kubectl get`"
    await make_secret(cluster, "hf-token", {"HF_TOKEN": "wrong"})
    status = await cluster.wait_status(
        "hf", lambda s: next((c["reason"] for c in s.get("conditions", []) if c["type"] == "Ready"),
                             None) == "AccessDenied", timeout=30, what="AccessDenied")
    secret = (await cluster.kube.get(SECRETS, "hf-token", namespace=cluster.namespace))
    secret["data"] = {"HF_TOKEN": base64.b64encode(b"tok-123").decode()}
    await cluster.kube.replace(SECRETS, "hf-token", secret, namespace=cluster.namespace)
    status = await cluster.wait_status("hf", lambda s: s.get("phase") == "Ready", timeout=60,
                                       what="Ready once the token is right")
    assert status["loadedAdapters"] == ["p-lora"]
    assert "tok-123" not in ctl.log_path.read_text()


async def test_download_cut_midway_then_heals(
    cluster: Cluster, hub: HubServer, start_controller: Callable[..., ControllerProcess],
    tmp_path: Path,
) -> None:
    files = adapter_files(base_model="tiny-llama", seed=5, hidden=512)
    hub.add_repo("org/big", under("big-lora", files))
    hub.drop_after = 4096  # every download is cut after 4 KiB
    await cluster.add_pod("vllm-0")
    store = tmp_path / "store"
    ctl = start_controller(env=controller_env(hub), store=store)
    await ctl.wait_ready()
    await cluster.apply("big", {"baseModel": "tiny-llama", "deploymentConfig": selector(),
                                "adapterSource": {"type": "huggingface", "repository": "org/big"}})
    def network_failure(s: dict[str, Any]) -> bool:
        degraded = next((c for c in s.get("conditions", []) if c["type"] == "Degraded"), {})
        staging = any("staging failed" in f["reason"] for f in s.get("failedAdapters", []))
        return degraded.get("reason") == "SourceUnreachable" or staging

    status = await cluster.wait_status("big", network_failure, timeout=90,
                                       what="the network failure in status")
    assert status["phase"] in ("Failed", "Partial")
    assert cluster.loaded("vllm-0") == {}
    # Nothing half-written is visible in the store: only hidden temporary folders, if any.
    visible = [p for p in store.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(store).parts)]
    assert visible == []
    hub.drop_after = None
    status = await cluster.wait_status("big", lambda s: s.get("phase") == "Ready", timeout=90,
                                       what="Ready after the hub heals")
    staged = Path(cluster.loaded("vllm-0")["big-lora"])
    assert (staged / "adapter_model.safetensors").read_bytes() == files["adapter_model.safetensors"]
