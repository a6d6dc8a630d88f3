"""Test helpers around the real local control plane: kubectl, namespaces, CRD installation."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from lora_controller.devenv.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


def kubectl(
    cp: ControlPlane, *args: str, input: str | None = None, user: bool = False, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(cp.user_kubeconfig if user else cp.kubeconfig))
    proc = subprocess.run(
        ["kubectl", *args], input=input, env=env, capture_output=True, text=True, timeout=60
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc


def kubectl_json(cp: ControlPlane, *args: str) -> Any:
    return json.loads(kubectl(cp, *args, "-o", "json").stdout)


def install_crds(cp: ControlPlane, *, timeout: float = 60.0) -> None:
    """Apply every CRD in crds/ and wait until each is Established and served."""
    kubectl(cp, "apply", "-f", str(CRDS))
    names = [item["metadata"]["name"] for item in kubectl_json(cp, "get", "crd")["items"]]
    for name in names:
        kubectl(cp, "wait", "--for=condition=Established", f"crd/{name}", f"--timeout={int(timeout)}s")
    deadline = time.monotonic() + timeout
    for name in names:
        plural, group = name.split(".", 1)
        # Served and published in the OpenAPI document (kubectl explain reads it), which lags.
        while (
            kubectl(cp, "get", f"{plural}.{group}", "-A", check=False).returncode != 0
            or kubectl(cp, "explain", f"{plural}.{group}", check=False).returncode != 0
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {name} is Established but not served")
            time.sleep(0.2)
