"""hack/bootstrap, the first step of `make demo` and `make test`: it says what it installs and about
how long it takes before the minute of quiet `pip install -q`, and does nothing (silently) once done.

Run on a copy of the script with a stand-in `python3` that records its calls, so the test needs
no network and no new virtualenv."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from tests.deploy.rendering import REPO

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
exit 0
"""


def _bootstrap(repo: Path, fake: Path, calls: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": str(fake), "CALLS": str(calls)}
    return subprocess.run([str(repo / "hack" / "bootstrap")], env=env, capture_output=True, text=True, timeout=60)


def test_bootstrap_says_what_it_installs_then_stays_quiet(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "hack").mkdir(parents=True)
    shutil.copy(REPO / "hack" / "bootstrap", repo / "hack" / "bootstrap")
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    fake, calls = tmp_path / "python3", tmp_path / "calls"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)

    first = _bootstrap(repo, fake, calls)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == str(repo / ".venv" / "bin")
    said = first.stderr.splitlines()
    assert said and "installing lora-controller" in said[0] and "minutes" in said[0], first.stderr
    assert "test extra" in said[0]
    assert said[-1].startswith("bootstrap: installed in "), first.stderr
    recorded = calls.read_text().splitlines()
    installs = [i for i, c in enumerate(recorded) if c.startswith("-m pip install -q -e ")]
    assert installs and recorded[installs[0]].endswith(f"{repo}[test]"), recorded

    again = _bootstrap(repo, fake, calls)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert again.stdout.strip() == str(repo / ".venv" / "bin")

    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    changed = _bootstrap(repo, fake, calls)
    assert changed.stderr.splitlines()[0].startswith("bootstrap: pyproject.toml changed"), changed.stderr
