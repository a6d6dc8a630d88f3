"""Simulated vLLM pods as real Pod objects, for the demo, the benchmarks and the end-to-end tests.

With no kubelet in the local control plane, a Pod stays Pending: this module creates Pods whose
vLLM command line matches a simulator's configuration, and writes their status (Running, Ready,
podIP, restart count) as a kubelet would. The simulator listens on a loopback port, named by the
pod's `http` container port. `cluster.Cluster` puts these together with the simulators.
"""

from __future__ import annotations

from typing import Any

from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import PODS

JSON = dict[str, Any]
MEMORY_ANNOTATION = "lora.production-stack.vllm-project/adapter-memory"


def pod_manifest(
    name: str, *, port: int, model: str, labels: dict[str, str], max_loras: int = 2,
    max_cpu_loras: int = 4, max_lora_rank: int = 16, node: str | None = None,
    annotations: dict[str, str] | None = None, lora_modules: tuple[str, ...] = (),
    scheduler_name: str | None = None,
) -> JSON:
    """A Pod running `vllm serve` with LoRA and runtime updating on, its `http` port the simulator's."""
    args = ["--model", model, "--enable-lora", "--max-loras", str(max_loras),
            "--max-cpu-loras", str(max_cpu_loras), "--max-lora-rank", str(max_lora_rank),
            "--port", str(port)]
    if lora_modules:
        args += ["--lora-modules", *lora_modules]
    spec: JSON = {"containers": [{
        "name": "vllm", "image": "vllm/vllm-openai:v0.32.0",
        "command": ["vllm", "serve"], "args": args,
        "env": [{"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"}],
        "ports": [{"name": "http", "containerPort": port}],
    }]}
    if node:
        spec["nodeName"] = node
    if scheduler_name:
        spec["schedulerName"] = scheduler_name
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
            "spec": spec}


async def set_pod_status(
    kube: KubeClient, namespace: str, name: str, *, ready: bool = True, restarts: int = 0,
    ip: str = "127.0.0.1",
) -> None:
    """Write a pod's status as the kubelet would for a running vLLM container."""
    status = {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{
            "name": "vllm", "image": "vllm/vllm-openai:v0.32.0", "imageID": "",
            "ready": ready, "restartCount": restarts, "started": True,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
    }
    await kube.patch(PODS, name, {"status": status}, namespace=namespace, subresource="status")


async def delete_pod_now(kube: KubeClient, namespace: str, name: str) -> None:
    """Delete without a grace period (no kubelet will confirm a graceful deletion)."""
    await kube.request("DELETE", PODS.path(namespace=namespace, name=name),
                       body={"gracePeriodSeconds": 0})
