"""The demo (`make demo`): the whole product on one machine, then everything stopped and removed.

1. a real kube-apiserver + etcd, the LoraAdapter CRD installed;
2. adapters generated into a local folder and into an S3 bucket (moto's server on loopback);
3. three simulated vLLM pods (tiny-llama) registered as Pods, Ready (`lora-controller dev sim-pods`'s code);
4. the controller started (`lora-controller run`), the sample resources applied;
5. a live table of each resource's phase and loaded/desired adapters until all are Ready;
6. the router API's answer, then a pod deleted and its adapters moving to the others.

Its working folder (control plane certificates and keys, adapters, the controller's log) is a
temporary folder removed on exit, unless `--keep` or `--workdir` asks to keep it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from lora_controller.devenv.adapters import adapter_files
from lora_controller.devenv.cluster import Cluster
from lora_controller.devenv.controlplane import free_port
from lora_controller.devenv.kubectl import kubectl
from lora_controller.devenv.local import LocalCluster
from lora_controller.devenv.sim_pods_command import SimPodsRequest, start_sim_pods
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import LORA_ADAPTERS, SECRETS

NS = "lora-demo"
MODEL = "tiny-llama"
BUCKET = "lora-adapters"
LOCAL_ADAPTERS = ["chat-lora", "sql-lora", "summary-lora"]
S3_ADAPTERS = ["support-en", "support-fr"]


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def start_moto() -> tuple[Any, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def fill_bucket(endpoint: str, bucket: str, names: list[str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="demo", aws_secret_access_key="demo-secret")
    s3.create_bucket(Bucket=bucket)
    for i, name in enumerate(names):
        for file, data in adapter_files(base_model=MODEL, seed=100 + i).items():
            s3.put_object(Bucket=bucket, Key=f"{MODEL}/{name}/{file}", Body=data)


async def table(kube: KubeClient) -> tuple[str, bool]:
    items = (await kube.list(LORA_ADAPTERS, namespace=NS))["items"]
    rows = [f"  {'NAME':<16} {'PHASE':<9} {'LOADED/DESIRED':<15} FAILED"]
    done = bool(items)
    for item in sorted(items, key=lambda i: i["metadata"]["name"]):
        st = item.get("status") or {}
        rows.append(f"  {item['metadata']['name']:<16} {st.get('phase', '-'):<9} "
                    f"{st.get('loadedCount', 0)}/{st.get('desiredCount', 0):<13} "
                    f"{st.get('failedCount', 0)}")
        done = done and st.get("phase") == "Ready" and st.get("observedGeneration") == \
            item["metadata"]["generation"]
    return "\n".join(rows), done


async def watch_until_ready(kube: KubeClient, timeout: float = 60) -> None:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        text, done = await table(kube)
        if text != last:
            print(f"[{time.monotonic() - started:5.1f}s]\n{text}", flush=True)
            last = text
        if done:
            return
        await asyncio.sleep(0.3)
    raise RuntimeError("the resources did not become Ready in time")


def placement(cluster: Cluster) -> str:
    return "\n".join(f"  {name}: {', '.join(sorted(cluster.loaded(name))) or '-'}"
                     for name in sorted(cluster.pods))


def resources(local: Path, s3_endpoint: str) -> dict[str, dict[str, Any]]:
    """The two sample LoraAdapters: local adapters (2 replicas) and S3 adapters (higher priority)."""
    selector = {"matchLabels": {"lora-enabled": "true", "model": MODEL}}
    return {
        "local-adapters": {
            "baseModel": MODEL, "adapterSource": {"type": "local", "repository": str(local)},
            "deploymentConfig": {"replicas": 2, "podSelector": selector},
            "schedulingConfig": {"priority": 10}},
        "s3-adapters": {
            "baseModel": MODEL,
            "adapterSource": {"type": "s3", "repository": f"s3://{BUCKET}/{MODEL}",
                              "endpoint": s3_endpoint, "region": "us-east-1"},
            "credentialsSecretRef": {"name": "s3-credentials"},
            "deploymentConfig": {"podSelector": selector},
            "schedulingConfig": {"priority": 100}},
    }


async def apply_samples(cluster: Cluster, local: Path, s3_endpoint: str) -> None:
    await cluster.kube.create(SECRETS, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials"},
        "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(b"demo").decode(),
                 "AWS_SECRET_ACCESS_KEY": base64.b64encode(b"demo-secret").decode()}},
        namespace=NS)
    for name, spec in resources(local, s3_endpoint).items():
        await cluster.apply(name, spec)
        print(f"loraadapter/{name} created")


async def router_answer(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(
            f"{url}/v1/adapters/sql-lora/pods?namespace={NS}", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        print(json.dumps(await resp.json(), indent=2))


async def move_after_deletion(local: LocalCluster, cluster: Cluster, victim: str) -> None:
    await cluster.delete_pod(victim)
    moved_at = time.monotonic()
    while time.monotonic() - moved_at < 30:
        _, done = await table(cluster.kube)
        copies = [sum(name in cluster.loaded(p) for p in cluster.pods) for name in LOCAL_ADAPTERS]
        if done and all(n >= 2 for n in copies):
            break
        await asyncio.sleep(0.3)
    print(f"re-placed in {time.monotonic() - moved_at:.1f}s")
    print(kubectl(local.cp, "get", "loraadapters", "-n", NS).stdout, end="")
    print("\nwhat each pod's /v1/models lists:\n" + placement(cluster))


async def run_demo(local: LocalCluster, started: float) -> None:
    """Steps 2 to 7, on a control plane that is up with the CRDs installed."""
    assert local.cp.state is not None
    print(f"kube-apiserver {local.cp.state.apiserver_url} ready in {time.monotonic() - started:.1f}s")
    print(local.crds_applied, end="")

    say("2. adapters: a local folder and an S3 bucket (moto server)")
    moto, s3_endpoint = start_moto()
    try:
        fill_bucket(s3_endpoint, BUCKET, S3_ADAPTERS)
        print(f"s3://{BUCKET}/{MODEL}/: {', '.join(S3_ADAPTERS)}  ({s3_endpoint})")

        say("3. three simulated vLLM pods serving tiny-llama (lora-controller dev sim-pods)")
        local_dir = local.workdir / "adapters"
        cluster = await start_sim_pods(local.kube, local.fleet, SimPodsRequest(
            namespace=NS, count=3, model=MODEL, prefix="vllm-tiny", adapters_dir=local_dir,
            max_loras=2, max_cpu_loras=6, load_latency_ms=400, nodes=True))
        print(kubectl(local.cp, "get", "pods", "-n", NS, "-o", "wide").stdout, end="")

        say("4. the controller, and the sample resources")
        ctl = local.start_controller("--no-leader-elect", namespace=NS, poll_interval=1, resync=None,
                                     log_level="info", env={"AWS_EC2_METADATA_DISABLED": "true"})
        await apply_samples(cluster, local_dir, s3_endpoint)
        print(f"placement view: {ctl.url}/  (open it in a browser while the demo runs)")

        say("5. status converging (phase, loaded/desired)")
        await watch_until_ready(local.kube)
        print("\n" + kubectl(local.cp, "get", "loraadapters", "-n", NS).stdout, end="")
        print("\nwhat each pod's /v1/models lists:\n" + placement(cluster))

        say("6. the router API: GET /v1/adapters/sql-lora/pods")
        await router_answer(ctl.url)

        say("7. pod vllm-tiny-1 deleted: its adapters move to the others")
        await move_after_deletion(local, cluster, "vllm-tiny-1")
    finally:
        say("stopping everything")
        moto.stop()


async def demo(workdir: Path) -> None:
    started = time.monotonic()
    say("1. a real local control plane: kube-apiserver + etcd")
    async with LocalCluster(workdir, timeout=10) as local:
        await run_demo(local, started)
    print(f"done in {time.monotonic() - started:.1f}s")


@contextlib.contextmanager
def working_folder(path: str | None, *, keep: bool) -> Iterator[Path]:
    """The demo's folder: `path` (kept), else a new temporary folder removed on exit unless `keep`."""
    folder = Path(path) if path else Path(tempfile.mkdtemp(prefix="lora-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        if path or keep:
            print(f"working folder kept: {folder} (control plane keys, adapters, controller.log)", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            print(f"working folder {folder} removed (--keep keeps it)", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workdir", help="use and keep this folder (default: a temporary folder, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working folder and say where")
    args = parser.parse_args(argv)
    with working_folder(args.workdir, keep=args.keep) as workdir:
        try:
            asyncio.run(demo(workdir))
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
