"""The kustomize base renders the chart's default objects (same kinds, names and content, less
Helm's own labels), and the real API server accepts it, also under an overlay of another namespace."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.kubectl import kubectl
from tests.deploy.rendering import (
    BUILD_TIMEOUT,
    JSON,
    KUSTOMIZE_BASE,
    by_kind,
    dump,
    kustomize,
    render,
)

pytestmark = [pytest.mark.usefixtures("helm_binary"), pytest.mark.timeout(BUILD_TIMEOUT + 300)]

HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}


def without_helm_marks(obj: JSON) -> JSON:
    """The object less what only Helm adds: its labels and `helm.sh/*` annotations."""
    obj = copy.deepcopy(obj)
    metas = [obj["metadata"]]
    if obj["kind"] == "Deployment":
        metas.append(obj["spec"]["template"]["metadata"])
    for meta in metas:
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_LABELS}
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                       if not k.startswith("helm.sh/")}
        for field, value in (("labels", labels), ("annotations", annotations)):
            if value:
                meta[field] = value
            else:
                meta.pop(field, None)
    return obj


def base_from(overlay: Path) -> str:
    """The base as an overlay elsewhere names it: kustomize takes only relative paths."""
    return os.path.relpath(KUSTOMIZE_BASE, overlay)


def test_kustomize_base_equals_the_charts_default() -> None:
    chart = by_kind([without_helm_marks(o) for o in render("lora-controller", "lora-controller")])
    base = by_kind(kustomize(KUSTOMIZE_BASE))
    assert sorted(base) == sorted(chart)
    for key, obj in chart.items():
        assert base[key] == obj, f"{key} differs between the chart and deploy/kustomize/base"


def test_the_comparison_sees_a_difference(tmp_path: Path) -> None:
    """An overlay that changes one field makes the renderings differ (the test above can fail)."""
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base_from(tmp_path)}]\n"
        "patches:\n"
        "  - target: {kind: Deployment, name: lora-controller}\n"
        "    patch: '[{\"op\": \"replace\", \"path\": \"/spec/replicas\", \"value\": 3}]'\n")
    chart = by_kind([without_helm_marks(o) for o in render("lora-controller", "lora-controller")])
    patched = by_kind(kustomize(tmp_path))
    assert sorted(patched) == sorted(chart)
    differs = [k for k in chart if patched[k] != chart[k]]
    assert differs == [("Deployment", "lora-controller")]


@pytest.mark.k8s
def test_kustomize_overlay_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The base under an overlay that moves it to another namespace, as docs/install.md shows."""
    (tmp_path / "kustomization.yaml").write_text(
        f"namespace: {namespace}\nresources: [{base_from(tmp_path)}]\n")
    objects = kustomize(tmp_path)
    for obj in objects:
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert obj["subjects"][0]["namespace"] == namespace
    manifest = tmp_path / "all.yaml"
    manifest.write_text(dump(objects))
    proc = kubectl(control_plane, "apply", "--dry-run=server", "--validate=strict", "-f",
                   str(manifest), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(objects), proc.stdout
