"""kubectl against a local control plane, and installing the CRDs of the repository.

Tests, benchmarks and the demo go through kubectl where a user would (apply, wait, get), so what
they exercise is what a person types. Standard library only, like `controlplane`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from lora_controller.devenv.controlplane import REPO, ControlPlane

CRDS = REPO / "crds"


class KubectlError(RuntimeError):
    """kubectl failed (its stderr is in the message)."""


def kubectl(
    cp: ControlPlane,
    *args: str,
    input: str | None = None,
    user: bool = False,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl as the admin (or, with `user`, as a user with no rights); `check` raises on failure."""
    env = dict(os.environ, KUBECONFIG=str(cp.user_kubeconfig if user else cp.kubeconfig))
    proc = subprocess.run(["kubectl", *args], input=input, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc


def kubectl_json(cp: ControlPlane, *args: str) -> Any:
    """`kubectl ... -o json`, decoded."""
    return json.loads(kubectl(cp, *args, "-o", "json").stdout)


def install_crds(cp: ControlPlane, *, timeout: float = 60.0) -> str:
    """Apply every CRD in crds/ and wait until each is Established and served; returns kubectl's output."""
    applied = kubectl(cp, "apply", "-f", str(CRDS)).stdout
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
                raise KubectlError(f"CRD {name} is Established but not served")
            time.sleep(0.2)
    return applied
