"""Benchmark: informer initial sync of N pods from a real API server, and memory per cached object.

Starts its own local control plane, creates N pods (default 10,000) shaped like vLLM pods, then
times a fresh SharedInformer's initial list into its store and measures the Python heap it takes
(tracemalloc). Prints one JSON object as its last line:
`pods`, `sync_s`, `objects_per_s`, `bytes_per_object`, `create_s`.

    python bench/informer.py [--pods 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.kube.client import KubeClient
from lora_controller.kube.informer import SharedInformer
from lora_controller.kube.resources import NAMESPACES, PODS


def vllm_pod(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"vllm-{i:05d}", "labels": {
            "app": "vllm", "lora-enabled": "true", "model": "tiny-llama", "shard": str(i % 10)}},
        "spec": {"nodeName": f"node-{i % 50}", "containers": [{
            "name": "vllm", "image": "vllm/vllm-openai:v0.32.0",
            "args": ["--model", "tiny-llama", "--enable-lora", "--max-loras", "4",
                     "--max-cpu-loras", "16", "--max-lora-rank", "64", "--port", "8000"],
            "env": [{"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"}],
            "ports": [{"name": "http", "containerPort": 8000}],
        }]},
    }


async def run(pods: int, concurrency: int) -> dict[str, Any]:
    cp = ControlPlane(Path(tempfile.mkdtemp(prefix="bench-informer-")))
    cp.up()
    kube = await KubeClient.from_config(kubeconfig=str(cp.kubeconfig), timeout=30, pool_size=concurrency)
    try:
        await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "bench"}})
        started = time.perf_counter()
        sem = asyncio.Semaphore(concurrency)

        async def create(i: int) -> None:
            async with sem:
                await kube.create(PODS, vllm_pod(i), namespace="bench")

        await asyncio.gather(*(create(i) for i in range(pods)))
        create_s = time.perf_counter() - started

        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        inf = SharedInformer(kube, PODS, namespace="bench")
        t0 = time.perf_counter()
        inf.start()
        assert await inf.wait_for_cache_sync(timeout=600)
        sync_s = time.perf_counter() - t0
        await inf.stop()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert len(inf.store) == pods
        return {
            "pods": pods,
            "sync_s": round(sync_s, 3),
            "objects_per_s": round(pods / sync_s),
            "bytes_per_object": round(held / pods),
            "create_s": round(create_s, 1),
        }
    finally:
        await kube.close()
        cp.down()
        shutil.rmtree(cp.dir, ignore_errors=True)  # its certificates and keys with it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.pods, args.concurrency))))


if __name__ == "__main__":
    main()
