"""Helpers of the deployment tests: run the pinned helm (hack/helm) and kubectl, render manifests.

`hack/helm` builds helm from hack/helm-tool/go.mod on its first call (minutes, once per machine);
every later call reuses the cached binary. helm's own config and cache go to a temporary folder,
never the user's.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "lora-controller"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
KUSTOMIZE_BASE = REPO / "deploy" / "kustomize" / "base"
CRD = REPO / "crds" / "loraadapters.production-stack.vllm-project.yaml"
HELM = REPO / "hack" / "helm"
BUILD_TIMEOUT = 1800.0

_helm_home = Path(tempfile.mkdtemp(prefix="lora-helm-home-"))
JSON = dict[str, Any]


def _helm_env() -> dict[str, str]:
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(_helm_home / "cache"),
        "HELM_CONFIG_HOME": str(_helm_home / "config"),
        "HELM_DATA_HOME": str(_helm_home / "data"),
    }


def build_helm() -> Path:
    """Build (once) and return the pinned helm binary."""
    proc = subprocess.run([str(HELM), "--print-path"], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT, env=_helm_env())
    if proc.returncode != 0:
        raise AssertionError(f"hack/helm could not build helm: {proc.stderr[-3000:]}")
    return Path(proc.stdout.strip())


def helm(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=timeout,
                          env=_helm_env(), cwd=str(REPO))
    if check and proc.returncode != 0:
        raise AssertionError(f"hack/helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def parse_manifests(text: str) -> list[JSON]:
    """The objects of a multi-document YAML stream (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(
    release: str = "lora-controller",
    namespace: str = "lora-controller",
    *,
    values: Sequence[Path] = (),
    set_json: Iterable[str] = (),
    include_crds: bool = True,
) -> list[JSON]:
    """`helm template` of the chart: every object it would install."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    for path in values:
        args += ["--values", str(path)]
    for item in set_json:
        args += ["--set-json", item]
    return parse_manifests(helm(*args).stdout)


def kustomize(path: Path) -> list[JSON]:
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed: {proc.stderr}")
    return parse_manifests(proc.stdout)


def by_kind(objects: list[JSON]) -> dict[tuple[str, str], JSON]:
    """Objects keyed by (kind, name); a duplicate key fails the test."""
    out: dict[tuple[str, str], JSON] = {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in out, f"two objects named {key}"
        out[key] = obj
    return out


def one(objects: list[JSON], kind: str) -> JSON:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(deployment: JSON) -> JSON:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def dump(objects: list[JSON]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)
