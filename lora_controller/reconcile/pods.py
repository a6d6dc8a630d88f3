"""What the controller knows of a vLLM pod from its Kubernetes object (pure).

A pod is a *target* for a LoraAdapter when it matches the resource's podSelector, is Ready, has an
IP, serves the resource's baseModel and has LoRA enabled. Its LoRA limits come from its vLLM
container's command line (`--enable-lora`, `--max-loras`, `--max-cpu-loras`, `--max-lora-rank`,
`--lora-modules`, `--model`, `--served-model-name`, `--port`) with vLLM's defaults; what the command
line cannot say comes from annotations:

- `lora.production-stack.vllm-project/adapter-memory`: memory available to adapters (a quantity).
- `lora.production-stack.vllm-project/port`: the port of the OpenAI server, when it is not the
  container port named `http` (else `--port`, else 8000).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from lora_controller.api.types import GROUP, LabelSelector
from lora_controller.core.quantity import parse_quantity
from lora_controller.reconcile.refs import PodRef
from lora_controller.vllm.endpoint import Endpoint
from lora_controller.vllm.serve_args import (
    ServeArgsError,
    VllmServeConfig,
    parse_serve_args,
)

JSON = dict[str, Any]

MEMORY_ANNOTATION = f"lora.{GROUP}/adapter-memory"
PORT_ANNOTATION = f"lora.{GROUP}/port"
ZONE_LABEL = "topology.kubernetes.io/zone"


@dataclass(frozen=True)
class TargetPod:
    """A pod as seen through its vLLM server's command line and status."""

    namespace: str
    name: str
    uid: str
    ip: str | None
    port: int
    ready: bool
    deleting: bool
    node: str | None
    zone: str | None
    labels: Mapping[str, str]
    served_models: tuple[str, ...]
    lora_enabled: bool
    runtime_updates: bool
    max_loras: int
    max_cpu_loras: int
    max_lora_rank: int
    startup_adapters: tuple[str, ...]
    memory_capacity: int | None
    restarts: int
    problem: str | None = None

    @property
    def ref(self) -> PodRef:
        return PodRef(self.namespace, self.name)

    @property
    def endpoint(self) -> Endpoint | None:
        return Endpoint(host=self.ip, port=self.port) if self.ip else None

    @cached_property
    def base_url(self) -> str | None:
        """Computed once per pod object (every router answer shows it)."""
        ep = self.endpoint
        return ep.base_url if ep else None

    @property
    def slots(self) -> int:
        """Adapters the pod keeps without thrashing: its CPU LoRA cache (--max-cpu-loras)."""
        return max(self.max_cpu_loras, self.max_loras)

    @property
    def usable(self) -> bool:
        """Can take new adapters: Ready, addressable, LoRA on, runtime updates allowed."""
        return (self.ready and not self.deleting and self.ip is not None and self.lora_enabled
                and self.runtime_updates and self.problem is None)

    @property
    def unusable_reason(self) -> str | None:
        """Why the pod takes no adapter, in words a person can act on (None: it is usable)."""
        if self.usable:
            return None
        if self.problem:
            return self.problem
        if not self.lora_enabled:
            return "its vLLM runs without --enable-lora"
        if not self.runtime_updates:
            return "its vLLM container does not set VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
        if not self.ready or self.ip is None:
            return "it is not Ready"
        return "it is being deleted"

    def serves(self, model: str) -> bool:
        return model in self.served_models

    @property
    def identity(self) -> tuple[str, str | None, int]:
        """What changes when the pod's vLLM server is a new one (new UID, new IP, a restart)."""
        return (self.uid, self.ip, self.restarts)


def _vllm_container(pod: JSON) -> tuple[JSON | None, VllmServeConfig | None, str | None]:
    containers: list[JSON] = (pod.get("spec") or {}).get("containers") or []
    best: tuple[JSON | None, VllmServeConfig | None, str | None] = (None, None, "no containers")
    for container in containers:
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        env = {e.get("name"): e.get("value") for e in container.get("env") or [] if "value" in e}
        try:
            cfg = parse_serve_args(
                argv, runtime_updating_env=env.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING"),
                api_key_env=env.get("VLLM_API_KEY"),
            )
        except ServeArgsError as exc:
            best = (container, None, f"container {container.get('name')}: {exc}")
            continue
        if cfg.is_vllm and cfg.served_model_names:
            # The env var can also come from valueFrom/envFrom, which the pod spec does not
            # resolve: a declared-but-unresolved variable counts as set.
            declared = {e.get("name") for e in container.get("env") or []}
            if not cfg.runtime_lora_updating and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in declared \
                    and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env:
                cfg = _with_runtime(cfg)
            if not cfg.runtime_lora_updating and container.get("envFrom"):
                cfg = _with_runtime(cfg)
            return container, cfg, None
        if container.get("name") == "vllm" and best[1] is None:
            best = (container, None, "container vllm: no model in its command line")
    return best


def _with_runtime(cfg: VllmServeConfig) -> VllmServeConfig:
    return replace(cfg, runtime_lora_updating=True)


def _container_port(container: JSON | None, fallback: int) -> int:
    for port in (container or {}).get("ports") or []:
        if port.get("name") == "http" and port.get("containerPort"):
            return int(port["containerPort"])
    return fallback


_READ_ENV = frozenset({"VLLM_ALLOW_RUNTIME_LORA_UPDATING", "VLLM_API_KEY"})
_READ_ANNOTATIONS = (MEMORY_ANNOTATION, PORT_ANNOTATION, ZONE_LABEL)


def _shared(values: Any) -> Any:
    """A list of strings whose strings are interned: the command lines and labels of a
    Deployment's pods are the same strings, kept once for all of them."""
    return [sys.intern(v) if isinstance(v, str) else v for v in values] \
        if isinstance(values, list) else values


def _container_fields(c: JSON) -> JSON:
    kept: JSON = {k: _shared(c[k]) for k in ("name", "command", "args") if k in c}
    env = [{k: e[k] for k in ("name", "value") if k in e}
           for e in c.get("env") or [] if e.get("name") in _READ_ENV]
    if env:
        kept["env"] = env
    if c.get("envFrom"):
        kept["envFrom"] = [{}] * len(c["envFrom"])  # only its presence is read
    ports = [{k: p[k] for k in ("name", "containerPort") if k in p}
             for p in c.get("ports") or [] if p.get("name") == "http"]
    if ports:
        kept["ports"] = ports
    return kept


def pod_fields(pod: JSON) -> JSON:
    """The pod informer's transform (client-go's `SetTransform`): only the fields `target_pod`
    reads, so that the cache of every pod of a namespace holds a few hundred bytes per pod instead
    of the whole object (volumes, env, probes, managedFields, most of the status). Idempotent."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    annotations = meta.get("annotations") or {}
    kept_meta: JSON = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                            "deletionTimestamp") if k in meta}
    if isinstance(meta.get("labels"), dict):
        kept_meta["labels"] = {sys.intern(str(k)): sys.intern(str(v))
                               for k, v in meta["labels"].items()}
    read = {k: annotations[k] for k in _READ_ANNOTATIONS if k in annotations}
    if read:
        kept_meta["annotations"] = read
    kept_status: JSON = {k: status[k] for k in ("phase", "podIP") if k in status}
    kept_status["conditions"] = [{"type": "Ready", "status": c.get("status")}
                                 for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    kept_status["containerStatuses"] = [{"restartCount": cs.get("restartCount") or 0}
                                        for cs in status.get("containerStatuses") or []]
    kept_spec: JSON = {"containers": [_container_fields(c) for c in spec.get("containers") or []]}
    if spec.get("nodeName"):
        kept_spec["nodeName"] = spec["nodeName"]
    return {"apiVersion": pod.get("apiVersion", "v1"), "kind": pod.get("kind", "Pod"),
            "metadata": kept_meta, "spec": kept_spec, "status": kept_status}


def target_pod(pod: JSON) -> TargetPod:
    """Read a Pod object. Never raises: what cannot be read becomes `problem`."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    labels = dict(meta.get("labels") or {})
    annotations = meta.get("annotations") or {}
    container, cfg, problem = _vllm_container(pod)
    ready = status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or [])
    memory: int | None = None
    raw_memory = annotations.get(MEMORY_ANNOTATION)
    if raw_memory:
        try:
            memory = parse_quantity(str(raw_memory))
        except ValueError:
            problem = problem or f"annotation {MEMORY_ANNOTATION}={raw_memory!r} is not a quantity"
    port = cfg.port if cfg else 8000
    port = _container_port(container, port)
    raw_port = annotations.get(PORT_ANNOTATION)
    if raw_port:
        try:
            port = int(raw_port)
        except ValueError:
            problem = problem or f"annotation {PORT_ANNOTATION}={raw_port!r} is not a port"
    return TargetPod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        ip=status.get("podIP") or None,
        port=port,
        ready=ready,
        deleting=bool(meta.get("deletionTimestamp")),
        node=spec.get("nodeName"),
        zone=labels.get(ZONE_LABEL) or annotations.get(ZONE_LABEL),
        labels=labels,
        served_models=cfg.served_model_names if cfg else (),
        lora_enabled=bool(cfg and cfg.enable_lora),
        runtime_updates=bool(cfg and cfg.runtime_lora_updating),
        max_loras=cfg.max_loras if cfg else 1,
        max_cpu_loras=cfg.max_cpu_loras if cfg else 1,
        max_lora_rank=cfg.max_lora_rank if cfg else 16,
        startup_adapters=tuple(m.name for m in cfg.lora_modules) if cfg else (),
        memory_capacity=memory,
        restarts=restarts,
        problem=problem,
    )


# -- label selectors (metav1.LabelSelector semantics) ------------------------------------------
def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Whether labels satisfy a LabelSelector; None (no selector) matches everything."""
    if selector is None:
        return True
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions or []:
        present = req.key in labels
        values = set(req.values or [])
        if req.operator == "In" and not (present and labels[req.key] in values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def selector_string(selector: LabelSelector | None) -> str:
    """The selector in the API server's labelSelector query syntax."""
    if selector is None:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for req in selector.match_expressions or []:
        if req.operator == "In":
            parts.append(f"{req.key} in ({','.join(sorted(req.values or []))})")
        elif req.operator == "NotIn":
            parts.append(f"{req.key} notin ({','.join(sorted(req.values or []))})")
        elif req.operator == "Exists":
            parts.append(req.key)
        else:
            parts.append(f"!{req.key}")
    return ",".join(parts)

