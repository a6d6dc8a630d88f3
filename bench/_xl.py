"""The xl size of bench/scale.py: simulated pods served by processes of their own, registered as Pods.

5,000 pods are more than the benchmark's own process can serve while it also creates 10,000
resources: `SimHosts` runs `--sim-hosts` processes of bench/_sim_host.py, many pods each, and
`register` creates a Pod object for each (its vLLM command line, its status Ready, its port the
simulator's), as the harness does for pods of its own process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_controller.devenv.simpods import pod_manifest, set_pod_status
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import PODS


class SimHosts:
    """`hosts` processes serving `pods` simulated pods in all; `ports` once entered."""

    def __init__(self, pods: int, hosts: int, **config: float) -> None:
        self.counts = [pods // hosts + (1 if i < pods % hosts else 0) for i in range(hosts)]
        self.config = config
        self.procs: list[asyncio.subprocess.Process] = []
        self.ports: list[int] = []
        self.loads = 0

    async def __aenter__(self) -> SimHosts:
        script = str(Path(__file__).with_name("_sim_host.py"))
        for count in self.counts:
            self.procs.append(await asyncio.create_subprocess_exec(
                sys.executable, script, json.dumps({"pods": count, **self.config}),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        for proc in self.procs:
            assert proc.stdout is not None
            self.ports.extend(json.loads(await proc.stdout.readline())["ports"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            self.loads += json.loads(line)["loads"] if line else 0
            await proc.wait()


async def register(kube: KubeClient, namespace: str, names: list[str], ports: list[int], *,
                   labels: Callable[[int], dict[str, str]], max_loras: int, max_cpu_loras: int,
                   concurrency: int = 32) -> None:
    """A Ready Pod for each simulated pod, `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        manifest: dict[str, Any] = pod_manifest(
            names[i], port=ports[i], model="tiny-llama", max_loras=max_loras,
            max_cpu_loras=max_cpu_loras, node=f"node-{i % 50}",
            labels={"app": "vllm", "lora-enabled": "true", "model": "tiny-llama", **labels(i)})
        async with sem:
            await kube.create(PODS, manifest, namespace=namespace)
            await set_pod_status(kube, namespace, names[i])

    await asyncio.gather(*(one(i) for i in range(len(names))))
