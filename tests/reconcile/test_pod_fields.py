"""The pod informer's transform keeps what `target_pod` reads and nothing else: the controller reads
every kept pod the same as the whole object, in a fraction of the bytes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lora_controller.reconcile.pods import pod_fields, target_pod
from tests.reconcile.test_pods import pod

JSON = dict[str, Any]
DEPLOYMENT = Path(__file__).parents[1] / "deploy" / "data" / "production-stack-vllm-deployment.yaml"
RUNTIME = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def production_stack_pod() -> JSON:
    """A Pod of the production-stack chart's vLLM Deployment, with what the API server adds."""
    deployment = next(d for d in yaml.safe_load_all(DEPLOYMENT.read_text())
                      if d and d.get("kind") == "Deployment")
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {**template["metadata"], "name": "vllm-7d9f-abcde", "namespace": "serving",
                     "uid": "5f0c", "resourceVersion": "4711",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "vllm-7d9f", "uid": "aa", "controller": True}],
                     "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                                        "fieldsV1": {"f:spec": {"f:containers": {}}}}]},
        "spec": {**template["spec"], "nodeName": "gpu-node-3"},
        "status": {"phase": "Running", "podIP": "10.1.2.3", "hostIP": "10.0.0.3",
                   "qosClass": "Burstable", "startTime": "2026-01-01T00:00:00Z",
                   "conditions": [{"type": t, "status": "True",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}
                                  for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                   "containerStatuses": [{"name": "vllm", "ready": True, "restartCount": 1,
                                          "image": "vllm/vllm-openai:v0.10.0",
                                          "imageID": "docker.io/vllm/vllm-openai@sha256:" + "0" * 64,
                                          "containerID": "containerd://" + "1" * 64,
                                          "state": {"running": {"startedAt": "2026-01-01T00:01:00Z"}}}]},
    }


def variants() -> list[JSON]:
    """Pods that exercise each field `target_pod` reads."""
    out = [production_stack_pod()]
    out.append(pod(["m", "--enable-lora", "--max-loras", "3"], env=RUNTIME))
    out.append(pod(["m", "--enable-lora"], env={**RUNTIME, "VLLM_API_KEY": "k", "HF_HOME": "/x"},
                   annotations={"lora.production-stack.vllm-project/adapter-memory": "2Gi",
                                "lora.production-stack.vllm-project/port": "9000",
                                "topology.kubernetes.io/zone": "z1", "unrelated": "x" * 500},
                   ports=[{"name": "metrics", "containerPort": 9100},
                          {"name": "http", "containerPort": 8001, "protocol": "TCP"}]))
    out.append(pod(["m", "--enable-lora"], ready=False))
    out.append(pod(["m", "--max-loras", "x"], env=RUNTIME))  # unreadable: a problem
    declared = pod(["m", "--enable-lora"])  # the variable comes from a Secret
    declared["spec"]["containers"][0]["env"] = [
        {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING",
         "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    out.append(declared)
    from_env = pod(["m", "--enable-lora"])
    from_env["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "vllm-env"}}]
    out.append(from_env)
    deleting = pod(["m", "--enable-lora"], env=RUNTIME, annotations={"unrelated": "y"})
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    deleting["status"]["containerStatuses"] = [{"restartCount": 1}, {"restartCount": 4}]
    out.append(deleting)
    sidecar = pod(["m", "--enable-lora"], env=RUNTIME)
    sidecar["spec"]["containers"].insert(0, {"name": "proxy", "command": ["envoy"], "args": ["-c"]})
    out.append(sidecar)
    out.append({"metadata": {"name": "bare", "namespace": "ns"}})  # no spec, no status
    return out


@pytest.mark.parametrize("index", range(len(variants())))
def test_the_controller_reads_a_kept_pod_as_the_whole_one(index: int) -> None:
    whole = variants()[index]
    kept = pod_fields(copy.deepcopy(whole))
    assert target_pod(kept) == target_pod(whole)
    assert pod_fields(copy.deepcopy(kept)) == kept  # idempotent, as client-go asks of a transform
    assert kept["metadata"].get("resourceVersion") == whole["metadata"].get("resourceVersion")


def test_a_real_pod_keeps_a_fraction_of_its_bytes() -> None:
    whole = production_stack_pod()
    kept = pod_fields(copy.deepcopy(whole))
    assert target_pod(kept).usable
    whole_bytes, kept_bytes = len(json.dumps(whole)), len(json.dumps(kept))
    assert kept_bytes < whole_bytes / 2, (kept_bytes, whole_bytes)
    assert "managedFields" not in kept["metadata"] and "volumes" not in kept["spec"]
    assert set(kept["metadata"].get("annotations", {})) <= {
        "lora.production-stack.vllm-project/adapter-memory",
        "lora.production-stack.vllm-project/port", "topology.kubernetes.io/zone"}
