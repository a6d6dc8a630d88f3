"""The chart's alerting rules under promtool: valid, and each alert's unit tests (when it fires,
when it does not, its labels and annotations) pass; a broken expectation makes promtool fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.prometheus.prom import promtool

pytestmark = [pytest.mark.tools]
TESTS = Path(__file__).parent / "rules_test.yaml"
ALERTS = {"LoraAdaptersFailing", "LoraDriftRepairsRepeating", "LoraLoadsFailing",
          "LoraControllerNotLeading", "LoraWorkQueueStuck"}


def test_the_rules_are_valid(chart_rules: Path) -> None:
    proc = promtool("check", "rules", str(chart_rules))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout, proc.stdout


def test_every_alert_has_unit_tests_that_pass(chart_rules: Path, tmp_path: Path) -> None:
    shutil.copy(chart_rules, tmp_path / "rules.yaml")
    shutil.copy(TESTS, tmp_path / "rules_test.yaml")
    proc = promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = {t["alertname"] for case in yaml.safe_load(TESTS.read_text())["tests"]
              for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == ALERTS


def test_a_wrong_expectation_fails(chart_rules: Path, tmp_path: Path) -> None:
    """The unit tests can fail: the same file with one expected value changed does."""
    shutil.copy(chart_rules, tmp_path / "rules.yaml")
    text = TESTS.read_text().replace('summary: "2 LoRA adapter(s) failed"',
                                     'summary: "3 LoRA adapter(s) failed"')
    (tmp_path / "rules_test.yaml").write_text(text)
    proc = promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert proc.returncode != 0 and "LoraAdaptersFailing" in proc.stdout + proc.stderr
