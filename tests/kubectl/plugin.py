"""Running `kubectl lora` the way a person does: the real kubectl finds the `kubectl-lora`
executable the package installed on the PATH and hands it the arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def kubectl_lora(*args: str, kubeconfig: Path, url: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert (BIN / "kubectl-lora").exists(), "kubectl-lora is not installed (pip install -e .)"
    full = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(kubeconfig), **(env or {})}
    full.pop("LORA_ROUTER_TOKEN", None) if env is None or "LORA_ROUTER_TOKEN" not in env else None
    extra = ["--controller-url", url] if url else []
    return subprocess.run(["kubectl", "lora", *args, *extra], capture_output=True, text=True,
                          timeout=timeout, env=full)
