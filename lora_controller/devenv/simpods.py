"""Simulated vLLM pods as real Pod objects, for the demo, the benchmarks and the end-to-end tests.

With no kubelet in the local control plane, a Pod stays Pending: this module creates Pods whose
vLLM command line matches a simulator's configuration, and writes their status (Running, Ready,
podIP, restart count) as a kubelet would. The simulator listens on a loopback port, named by the
pod's `http` container port. Also writes real adapter folders (config + safetensors) for demos.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save

from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import PODS

JSON = dict[str, Any]
MEMORY_ANNOTATION = "lora.production-stack.vllm-project/adapter-memory"


def pod_manifest(
    name: str, *, port: int, model: str, labels: dict[str, str], max_loras: int = 2,
    max_cpu_loras: int = 4, max_lora_rank: int = 16, node: str | None = None,
    annotations: dict[str, str] | None = None, lora_modules: tuple[str, ...] = (),
) -> JSON:
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


def adapter_files(*, base_model: str, r: int = 8, hidden: int = 64, seed: int = 0,
                  targets: tuple[str, ...] = ("q_proj", "v_proj")) -> dict[str, bytes]:
    """A PEFT LoRA adapter: adapter_config.json and adapter_model.safetensors (small, random)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for layer in range(2):
        for module in targets:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((r, hidden)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((hidden, r)).astype(np.float32)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r,
              "lora_dropout": 0.0, "bias": "none", "target_modules": list(targets),
              "base_model_name_or_path": base_model}
    return {"adapter_config.json": json.dumps(config, indent=2).encode(),
            "adapter_model.safetensors": save(tensors, metadata={"format": "pt"})}


def write_adapter(folder: Path, **kwargs: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in adapter_files(**kwargs).items():
        (folder / name).write_bytes(data)
