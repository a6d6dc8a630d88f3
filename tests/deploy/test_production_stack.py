"""deploy/production-stack/values-lora.yaml: the vLLM pods that the production-stack chart renders
from it are pods lora-controller selects, reads and can load adapters into.

The chart's rendering is kept in data/production-stack-vllm-deployment.yaml (how it was made is in
its header): the production-stack chart cannot be fetched here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lora_controller.api.types import LoraAdapter
from lora_controller.reconcile.pods import selector_matches, target_pod
from tests.deploy.rendering import BUILD_TIMEOUT, CHART, JSON, REPO, container, one, render

pytestmark = [pytest.mark.timeout(BUILD_TIMEOUT + 300)]

VALUES = REPO / "deploy" / "production-stack" / "values-lora.yaml"
RENDERED = Path(__file__).parent / "data" / "production-stack-vllm-deployment.yaml"
SAMPLE = REPO / "deploy" / "samples" / "proposal-example.yaml"
# servingEngineSpec.modelSpec[] keys of the production-stack chart (helm/values.yaml and
# helm/values.schema.json at commit a6c01db05f65f556235413ba8dbcfb0c01132fff), and vllmConfig's.
MODEL_SPEC_KEYS = {
    "affinity", "annotations", "chatTemplate", "enableLoRA", "enabled", "env", "envFromSecret",
    "extraVolumeMounts", "extraVolumes", "hf_token", "imagePullSecret", "initContainer", "keda",
    "labels", "limitCPU", "limitGPUCores", "limitGPUMem", "limitGPUMemPercentage", "limitMemory",
    "lmcacheConfig", "modelRevision", "modelURL", "name", "nodeName", "nodeSelectorTerms",
    "podAnnotations", "podLabels", "priorityClassName", "pvcAccessMode", "pvcAnnotations",
    "pvcLabels", "pvcMatchLabels", "pvcStorage", "raySpec", "replicaCount", "repository",
    "requestCPU", "requestGPU", "requestGPUCores", "requestGPUMem", "requestGPUMemPercentage",
    "requestGPUType", "requestMemory", "resources", "runtimeClassName", "serviceAccountName",
    "serviceAnnotations", "shmSize", "storageClass", "tag", "tolerations", "tolerationsPolicy",
    "vllmConfig",
}
VLLM_CONFIG_KEYS = {
    "convert", "dtype", "enableChunkedPrefill", "enablePrefixCaching", "extraArgs",
    "gpuMemoryUtilization", "maxLoras", "maxModelLen", "maxNumSeqs", "runner",
    "tensorParallelSize", "v0",
}


def model_specs() -> list[dict[str, Any]]:
    values = yaml.safe_load(VALUES.read_text())
    specs: list[dict[str, Any]] = values["servingEngineSpec"]["modelSpec"]
    assert specs
    return specs


def rendered_pod() -> JSON:
    """A pod of the rendered Deployment, as the kubelet reports it once vLLM is up."""
    dep = yaml.safe_load(RENDERED.read_text())
    template = dep["spec"]["template"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {**template["metadata"], "name": "vllm-llama2-70b-0", "namespace": "vllm",
                     "uid": "u-1"},
        "spec": template["spec"],
        "status": {"phase": "Running", "podIP": "10.1.2.3",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_values_use_only_the_charts_keys() -> None:
    for spec in model_specs():
        assert set(spec) <= MODEL_SPEC_KEYS, set(spec) - MODEL_SPEC_KEYS
        assert set(spec.get("vllmConfig", {})) <= VLLM_CONFIG_KEYS


def test_the_rendering_is_of_these_values() -> None:
    """The kept rendering still reflects values-lora.yaml (regenerate it when they change)."""
    spec = model_specs()[0]
    pod = rendered_pod()
    ctr = next(c for c in pod["spec"]["containers"] if c["name"] == "vllm")
    assert pod["metadata"]["labels"].items() >= spec["podLabels"].items()
    assert ctr["image"] == f"{spec['repository']}:{spec['tag']}"
    assert spec["modelURL"] in ctr["command"]
    env = [e for e in ctr["env"] if "value" in e]
    assert all(e in env for e in spec["env"])
    assert all(m in ctr["volumeMounts"] for m in spec["extraVolumeMounts"])
    assert all(v in pod["spec"]["volumes"] for v in spec["extraVolumes"])
    argv = ctr["command"]
    assert argv[argv.index("--max_loras") + 1] == str(spec["vllmConfig"]["maxLoras"])
    extra = spec["vllmConfig"]["extraArgs"]
    assert argv[-len(extra):] == [str(a) for a in extra]


def test_the_controller_reads_the_pod_as_a_lora_target() -> None:
    pod = target_pod(rendered_pod())
    spec = model_specs()[0]
    assert pod.problem is None
    assert pod.usable, pod
    assert pod.lora_enabled and pod.runtime_updates
    assert pod.served_models == (spec["modelURL"],)
    assert pod.port == 8000
    extra = spec["vllmConfig"]["extraArgs"]
    assert pod.max_loras == spec["vllmConfig"]["maxLoras"]
    assert pod.max_cpu_loras == int(extra[extra.index("--max-cpu-loras") + 1])
    assert pod.max_lora_rank == int(extra[extra.index("--max-lora-rank") + 1])


def test_the_sample_selects_these_pods() -> None:
    cr = LoraAdapter.model_validate(yaml.safe_load(SAMPLE.read_text()))
    pod = target_pod(rendered_pod())
    assert selector_matches(cr.spec.deployment().pod_selector, pod.labels)
    assert pod.serves(cr.spec.base_model)
    # Without the discovery labels, the same pod is not selected.
    bare = rendered_pod()
    for key in model_specs()[0]["podLabels"]:
        del bare["metadata"]["labels"][key]
    assert not selector_matches(cr.spec.deployment().pod_selector, target_pod(bare).labels)


def test_runtime_updates_and_lora_are_what_make_the_pod_usable() -> None:
    without_env = rendered_pod()
    ctr = next(c for c in without_env["spec"]["containers"] if c["name"] == "vllm")
    ctr["env"] = [e for e in ctr["env"] if e["name"] != "VLLM_ALLOW_RUNTIME_LORA_UPDATING"]
    assert not target_pod(without_env).usable
    without_lora = rendered_pod()
    ctr = next(c for c in without_lora["spec"]["containers"] if c["name"] == "vllm")
    ctr["command"] = [a for a in ctr["command"] if a != "--enable-lora"]
    assert not target_pod(without_lora).usable


@pytest.mark.usefixtures("helm_binary")
def test_the_adapter_store_is_the_controllers() -> None:
    """Same claim as a `lora-controller` release in that namespace, same path as its --adapter-store."""
    objects = render("lora-controller", "vllm")
    dep = one(objects, "Deployment")
    args = container(dep)["args"]
    store = next(a.split("=", 1)[1] for a in args if a.startswith("--adapter-store="))
    claim = one(objects, "PersistentVolumeClaim")["metadata"]["name"]
    assert store == yaml.safe_load((CHART / "values.yaml").read_text())["adapterStore"]["mountPath"]
    pod = rendered_pod()
    ctr = next(c for c in pod["spec"]["containers"] if c["name"] == "vllm")
    mount = next(m for m in ctr["volumeMounts"] if m["mountPath"] == store)
    assert mount.get("readOnly") is True
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == claim
