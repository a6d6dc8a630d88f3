"""The demo (`make demo`): the whole product on one machine, then everything stopped.

1. a real kube-apiserver + etcd, the LoraAdapter CRD installed;
2. three simulated vLLM pods (tiny-llama) registered as Pods, Ready;
3. adapters generated into a local folder and into an S3 bucket (moto's server on loopback);
4. the controller started (`lora-controller run`), the sample resources applied;
5. a live table of each resource's phase and loaded/desired adapters until all are Ready;
6. the router API's answer, then a pod deleted and its adapters moving to the others.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.controlplane import REPO, ControlPlane, free_port
from lora_controller.devenv.simpods import (
    adapter_files,
    delete_pod_now,
    pod_manifest,
    set_pod_status,
    write_adapter,
)
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import LORA_ADAPTERS, NAMESPACES, PODS, SECRETS
from lora_controller.simulator.config import PodConfig
from lora_controller.simulator.fleet import SimulatedFleet

NS = "lora-demo"
MODEL = "tiny-llama"


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def kubectl(cp: ControlPlane, *args: str) -> str:
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig))
    out = subprocess.run(["kubectl", *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout


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


def start_controller(cp: ControlPlane, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """`lora-controller run` for the demo namespace, logging JSON to workdir/controller.log."""
    with open(workdir / "controller.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "lora_controller", "run", "--kubeconfig", str(cp.kubeconfig),
             "--namespace", NS, "--adapter-store", str(workdir / "store"),
             "--listen", f"127.0.0.1:{port}", "--no-leader-elect", "--poll-interval", "1",
             "--log-format", "json"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})


def placement(fleet_pods: dict[str, Any]) -> str:
    return "\n".join(f"  {name}: {', '.join(sorted(p.adapters)) or '-'}"
                     for name, p in sorted(fleet_pods.items()))


async def demo(workdir: Path) -> None:
    cp = ControlPlane(workdir / "kube")
    moto = None
    kube: KubeClient | None = None
    controller: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        say("1. a real local control plane: kube-apiserver + etcd")
        cp.up()
        assert cp.state is not None
        print(f"kube-apiserver {cp.state.apiserver_url} ready in {time.monotonic() - started:.1f}s")
        print(kubectl(cp, "apply", "-f", str(REPO / "crds")), end="")
        kubectl(cp, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kube = await KubeClient.from_config(kubeconfig=str(cp.kubeconfig), timeout=10)
        await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": NS}})

        say("2. adapters: a local folder and an S3 bucket (moto server)")
        local = workdir / "adapters"
        for i, name in enumerate(["chat-lora", "sql-lora", "summary-lora"]):
            write_adapter(local / name, base_model=MODEL, seed=i)
        moto, s3_endpoint = start_moto()
        fill_bucket(s3_endpoint, "lora-adapters", ["support-en", "support-fr"])
        print(f"local: {', '.join(sorted(p.name for p in local.iterdir()))}")
        print(f"s3://lora-adapters/{MODEL}/: support-en, support-fr  ({s3_endpoint})")

        async with SimulatedFleet() as fleet:
            say("3. three simulated vLLM pods serving tiny-llama")
            sims: dict[str, Any] = {}
            for i in range(3):
                name = f"vllm-tiny-{i}"
                sim = await fleet.add_pod(PodConfig(model=MODEL, max_loras=2, max_cpu_loras=6),
                                          host="127.0.0.1", port=0)
                sim.faults.load_latency_ms = 400
                await kube.create(PODS, pod_manifest(
                    name, port=sim.port, model=MODEL, node=f"node-{i}", max_cpu_loras=6,
                    labels={"lora-enabled": "true", "model": MODEL}), namespace=NS)
                await set_pod_status(kube, NS, name)
                sims[name] = sim
            print(kubectl(cp, "get", "pods", "-n", NS, "-o", "wide"), end="")

            say("4. the controller, and the sample resources")
            port = free_port()
            controller = start_controller(cp, workdir, port)
            await kube.create(SECRETS, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials"},
                "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(b"demo").decode(),
                         "AWS_SECRET_ACCESS_KEY": base64.b64encode(b"demo-secret").decode()}},
                namespace=NS)
            selector = {"matchLabels": {"lora-enabled": "true", "model": MODEL}}
            for name, spec in [
                ("local-adapters", {
                    "baseModel": MODEL, "adapterSource": {"type": "local", "repository": str(local)},
                    "deploymentConfig": {"replicas": 2, "podSelector": selector},
                    "schedulingConfig": {"priority": 10}}),
                ("s3-adapters", {
                    "baseModel": MODEL,
                    "adapterSource": {"type": "s3", "repository": f"s3://lora-adapters/{MODEL}",
                                      "endpoint": s3_endpoint, "region": "us-east-1"},
                    "credentialsSecretRef": {"name": "s3-credentials"},
                    "deploymentConfig": {"podSelector": selector},
                    "schedulingConfig": {"priority": 100}}),
            ]:
                await kube.create(LORA_ADAPTERS, {"apiVersion": API_VERSION, "kind": "LoraAdapter",
                                                  "metadata": {"name": name}, "spec": spec},
                                  namespace=NS)
                print(f"loraadapter/{name} created")

            say("5. status converging (phase, loaded/desired)")
            await watch_until_ready(kube)
            print()
            print(kubectl(cp, "get", "loraadapters", "-n", NS), end="")
            print("\nwhat each pod's /v1/models lists:\n" + placement(sims))

            say("6. the router API: GET /v1/adapters/sql-lora/pods")
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{port}/v1/adapters/sql-lora/pods?namespace={NS}"
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    print(json.dumps(await resp.json(), indent=2))

            victim = "vllm-tiny-1"
            say(f"7. pod {victim} deleted: its adapters move to the others")
            await delete_pod_now(kube, NS, victim)
            await fleet.remove_pod(sims.pop(victim))
            moved_at = time.monotonic()
            while time.monotonic() - moved_at < 30:
                _, done = await table(kube)
                by_name: dict[str, int] = {}
                for sim in sims.values():
                    for adapter in sim.adapters:
                        by_name[adapter] = by_name.get(adapter, 0) + 1
                if done and all(by_name.get(n, 0) >= 2 for n in ("chat-lora", "sql-lora",
                                                                 "summary-lora")):
                    break
                await asyncio.sleep(0.3)
            print(f"re-placed in {time.monotonic() - moved_at:.1f}s")
            print(kubectl(cp, "get", "loraadapters", "-n", NS), end="")
            print("\nwhat each pod's /v1/models lists:\n" + placement(sims))
    finally:
        if kube is not None:
            await kube.close()
        say("stopping everything")
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            try:
                controller.wait(30)
            except subprocess.TimeoutExpired:
                controller.kill()
        if moto is not None:
            moto.stop()
        cp.down()
        print(f"done in {time.monotonic() - started:.1f}s (controller log: {workdir / 'controller.log'})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="keep the demo's files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lora-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(demo(workdir))
    except KeyboardInterrupt:
        return 130
    finally:
        if not args.workdir:
            shutil.rmtree(workdir / "store", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
