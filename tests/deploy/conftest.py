"""Fixtures of the deployment tests: the pinned helm, and the end-to-end fixtures (simulated vLLM
pods, the controller as a process) for the RBAC proof."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.rendering import build_helm
from tests.e2e.conftest import adapter_dir, cluster, start_controller

__all__ = ["adapter_dir", "cluster", "helm_binary", "start_controller"]


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """hack/helm's binary, built on first use (minutes on a fresh machine, then cached)."""
    return build_helm()
