"""`lora-controller run`'s flags: help that shows each default and environment variable, and the
precedence of `--namespace` over `LORA_CONTROLLER_NAMESPACE` that docs/operation.md states."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lora_controller.cli.main import build_parser
from tests.cli.test_run_errors import clean_env
from tests.e2e.harness import REPO


def help_blocks() -> dict[str, str]:
    """`run --help`, one block of text per option, keyed by its first flag; every flag of the
    usage line has one."""
    proc = subprocess.run([sys.executable, "-m", "lora_controller", "run", "--help"], cwd=REPO,
                          env=clean_env(COLUMNS="100"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    usage, _, options = proc.stdout.partition("options:")
    flags = set(re.findall(r"\[(--[a-z][-a-z]*)", usage))
    blocks: dict[str, str] = {}
    current = ""
    for line in options.splitlines():
        match = re.match(r"^  (--?[a-z][-a-z]*)", line)
        if match:
            current = match.group(1)
            blocks[current] = ""
        if current:
            blocks[current] += " " + line.strip()
    assert set(blocks) == flags | {"-h"}, (flags, blocks.keys())
    return blocks


def test_help_shows_every_default_and_environment_variable() -> None:
    blocks = help_blocks()
    blocks.pop("-h")
    for flag, text in blocks.items():
        env = "LORA_CONTROLLER_" + flag.lstrip("-").upper().replace("-", "_")
        assert env in text, (flag, text)
        assert "default" in text, (flag, text)
    assert "Lease" in blocks["--lease-name"] and "Lease" in blocks["--lease-namespace"]
    assert "KUBECONFIG" in blocks["--kubeconfig"] and "POD_NAMESPACE" in blocks["--lease-namespace"]
    assert "(1 to 1024; default: 4; env LORA_CONTROLLER_WORKERS)" in blocks["--workers"]


def namespaces(monkeypatch: pytest.MonkeyPatch, env: str | None, *args: str) -> list[str] | None:
    if env is None:
        monkeypatch.delenv("LORA_CONTROLLER_NAMESPACE", raising=False)
    else:
        monkeypatch.setenv("LORA_CONTROLLER_NAMESPACE", env)
    result: list[str] | None = build_parser().parse_args(["run", *args]).namespaces
    return result


def test_the_namespace_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert namespaces(monkeypatch, "a,b", "--namespace", "c") == ["c"]
    assert namespaces(monkeypatch, "a,b", "--namespace", "c", "--namespace", "d") == ["c", "d"]
    assert namespaces(monkeypatch, "a,b") == ["a", "b"]
    assert namespaces(monkeypatch, " a , b ,") == ["a", "b"]
    assert namespaces(monkeypatch, None, "--namespace", "c,d") == ["c", "d"]
    assert namespaces(monkeypatch, None) is None
    assert namespaces(monkeypatch, "") is None


@pytest.mark.parametrize(("env", "args"), [("Not_A_Namespace", []), (None, ["--namespace", "UP"]),
                                           (None, ["--namespace", ""])])
def test_a_namespace_that_is_not_a_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: str | None,
    args: list[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        namespaces(monkeypatch, env, *args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--namespace" in err and len(err.strip().splitlines()) == 1, err
