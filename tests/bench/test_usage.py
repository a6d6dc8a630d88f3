"""Smoke test of bench/usage.py: its small scenarios run, the last line is the contract's JSON,
and a run is deterministic for a seed (virtual time). The figures themselves are the benchmark's
business (run it in full), not this test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "usage.py"
FIGURES = {"route_churn", "adapter_churn", "hit_rate", "churn_free_ticks", "peak_route_churn",
           "unserved_ratio", "peak_memory_bytes"}
SCENARIOS = {"dynamo-hot", "dynamo-daily", "dynamo-spike", "dynamo-mmpp", "drift", "large"}


def _run(seed: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, str(BENCH), "--smoke", "--seed", str(seed)],
                         capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_the_last_line_is_the_contract_and_a_seed_gives_the_same_figures() -> None:
    first = _run(7)
    assert set(first["scenarios"]) == SCENARIOS  # type: ignore[arg-type]
    for name, modes in first["scenarios"].items():  # type: ignore[attr-defined]
        assert set(modes) == {"fixed", "demand", "hrw"}, name
        if name == "large":
            assert modes["hrw"] is None  # not run there: see bench/usage.py
        for figures in (f for f in modes.values() if f is not None):
            assert set(figures) == FIGURES
            assert 0 <= figures["hit_rate"] <= 1 and 0 <= figures["unserved_ratio"] <= 1
            assert figures["peak_route_churn"] <= figures["route_churn"]
    assert isinstance(first["incremental_ms"], float | int) and first["incremental_ms"] > 0
    second = _run(7)
    assert second["scenarios"] == first["scenarios"]
