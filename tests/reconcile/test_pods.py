"""Reading a vLLM pod's limits from its Pod object, and label selectors."""

from __future__ import annotations

from typing import Any

from lora_controller.api.types import LabelSelector
from lora_controller.reconcile.pods import selector_matches, selector_string, target_pod


def pod(args: list[str], *, command: list[str] | None = None, env: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None, ready: bool = True, ports: list[Any] | None = None,
        ) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"a": "1"},
                     "annotations": annotations or {}},
        "spec": {"nodeName": "n1", "containers": [{
            "name": "vllm", "command": command or ["vllm", "serve"], "args": args,
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
            "ports": ports or []}]},
        "status": {"phase": "Running", "podIP": "10.1.2.3",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": [{"restartCount": 2}]},
    }


def test_limits_from_the_command_line_with_vllm_defaults() -> None:
    p = target_pod(pod(["meta-llama/Llama-3-8B", "--enable-lora"],
                       env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}))
    assert p.served_models == ("meta-llama/Llama-3-8B",)
    assert (p.max_loras, p.max_cpu_loras, p.max_lora_rank, p.port) == (1, 1, 16, 8000)
    assert p.lora_enabled and p.runtime_updates and p.usable and p.restarts == 2
    assert p.base_url == "http://10.1.2.3:8000"


def test_explicit_limits_served_names_startup_adapters_and_annotations() -> None:
    p = target_pod(pod(
        ["--model", "/models/llama", "--served-model-name", "llama", "llama-alias", "--enable-lora",
         "--max-loras=4", "--max-cpu-loras", "12", "--max-lora-rank", "64",
         "--lora-modules", "sql=/m/sql", "--port", "9000"],
        env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"},
        annotations={"lora.production-stack.vllm-project/adapter-memory": "2Gi"},
        ports=[{"name": "http", "containerPort": 9001}]))
    assert p.served_models == ("llama", "llama-alias") and p.serves("llama-alias")
    assert (p.max_loras, p.max_cpu_loras, p.max_lora_rank) == (4, 12, 64)
    assert p.startup_adapters == ("sql",) and p.slots == 12
    assert p.memory_capacity == 2 * 1024**3
    assert p.port == 9001  # the container port named http wins over --port


def test_without_runtime_updates_or_lora_a_pod_takes_nothing() -> None:
    assert not target_pod(pod(["m", "--enable-lora"])).usable
    assert not target_pod(pod(["m"], env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true"})).usable
    assert not target_pod(pod(["m", "--enable-lora"], env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"},
                              ready=False)).usable


def test_bad_annotation_is_a_problem_not_a_crash() -> None:
    p = target_pod(pod(["m", "--enable-lora"], env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"},
                       annotations={"lora.production-stack.vllm-project/adapter-memory": "lots"}))
    assert p.problem is not None and "adapter-memory" in p.problem and not p.usable


def test_label_selector_semantics() -> None:
    sel = LabelSelector.model_validate({"matchLabels": {"a": "1"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["gold", "silver"]},
        {"key": "old", "operator": "DoesNotExist"}]})
    assert selector_matches(sel, {"a": "1", "tier": "gold"})
    assert not selector_matches(sel, {"a": "1", "tier": "bronze"})
    assert not selector_matches(sel, {"a": "1", "tier": "gold", "old": "x"})
    assert selector_matches(None, {})
    assert selector_string(sel) == "a=1,tier in (gold,silver),!old"
