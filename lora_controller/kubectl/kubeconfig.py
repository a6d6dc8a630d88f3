"""What kubectl would take from the kubeconfig: which file(s), which context, which namespace.

kubectl reads `--kubeconfig`, else every file of `$KUBECONFIG` (first one wins for each entry),
else `~/.kube/config`; the context is `--context` or the current one; the namespace is `-n`, else
the context's, else `default`. The connection itself (certificates, tokens) is the kube layer's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubeconfigError(Exception):
    """The kubeconfig cannot be used as asked (no file, no such context)."""


@dataclass(frozen=True)
class KubeSettings:
    path: str | None  # what to hand the API client (None: in-cluster)
    context: str | None
    namespace: str


def _files(flag: str | None) -> list[Path]:
    if flag:
        return [Path(flag)]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig {path} is not YAML: {exc}") from None
    return doc if isinstance(doc, dict) else {}


def settings(*, kubeconfig: str | None, context: str | None,
             namespace: str | None) -> KubeSettings:
    files = [f for f in _files(kubeconfig) if kubeconfig or f.exists()]
    if not files:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):  # in a pod: its service account
            return KubeSettings(None, context, namespace or _pod_namespace())
        raise KubeconfigError("no kubeconfig: give --kubeconfig, set KUBECONFIG, or create "
                              "~/.kube/config")
    current: str | None = None
    contexts: dict[str, dict[str, Any]] = {}
    for f in files:
        doc = _load(f)
        current = current or doc.get("current-context") or None
        for entry in doc.get("contexts") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                contexts.setdefault(entry["name"], entry.get("context") or {})
    chosen = context or current
    if chosen is None:
        raise KubeconfigError("the kubeconfig has no current context; give --context")
    if chosen not in contexts:
        raise KubeconfigError(f"context {chosen!r} is not in the kubeconfig")
    ns = namespace or contexts[chosen].get("namespace") or "default"
    return KubeSettings(os.pathsep.join(str(f) for f in files), chosen, str(ns))


def _pod_namespace() -> str:
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except OSError:
        return "default"
