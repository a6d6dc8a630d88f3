"""Fixtures of the metrics tests: the chart's alerting rules and dashboard as helm renders them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import build_helm, one, render

RELEASE = "lora-controller"  # its Lease, and so the alerts' and the dashboard's, is named so


@pytest.fixture(scope="session")
def chart_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file."""
    build_helm()
    rule = one(render(RELEASE, "monitoring", set_json=['prometheusRule={"enabled":true}']),
               "PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    """The Grafana dashboard of the chart's ConfigMap."""
    build_helm()
    board = one(render(RELEASE, "monitoring", set_json=['grafanaDashboard={"enabled":true}']),
                "ConfigMap")
    doc: dict[str, Any] = json.loads(board["data"]["lora-controller.json"])
    return doc
