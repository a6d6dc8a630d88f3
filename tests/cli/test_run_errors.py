"""`lora-controller run` given a user's mistakes: one line saying what is wrong and what to do, exit
status 2 for a wrong command line, environment or named file and 1 for a failure at run time, no
traceback, and nothing left half-started ("Unclosed client session")."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import REPO
from tests.support.secrets import credential

TOKEN = credential("kube-token-0a9b8c7d6e5f4a3b2c1d")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a machine outside any cluster, with no kubeconfig and no LORA_* values."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LORA_CONTROLLER_", "KUBERNETES_SERVICE_", "KUBECONFIG", "POD_"))}
    return {**env, "HOME": "/nonexistent-home", **extra}


def lora_run(*args: str, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_controller", "run", *args], cwd=REPO,
                          env=env or clean_env(), capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    """The run failed with `status` and said so in one line naming every word of `words`."""
    err = proc.stderr
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err and "Unclosed" not in err and "Task was destroyed" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A well-formed kubeconfig whose server no one answers (nothing is contacted before listening)."""
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    return path


def test_no_kubeconfig_outside_a_cluster() -> None:
    line = one_line_error(lora_run(), 2, "--kubeconfig", "KUBECONFIG", "cluster")
    assert "Service host/port" in line


def test_a_kubeconfig_that_does_not_exist() -> None:
    one_line_error(lora_run("--kubeconfig", "/nonexistent"), 2, "/nonexistent", "--kubeconfig")
    one_line_error(lora_run(env=clean_env(KUBECONFIG="/nonexistent")), 2, "/nonexistent")


def test_a_kubeconfig_without_a_current_context(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("apiVersion: v1\nkind: Config\n")
    one_line_error(lora_run("--kubeconfig", str(tmp_path / "empty")), 2, "current-context",
                   str(tmp_path / "empty"))


@pytest.mark.parametrize("listen", ["127.0.0.1:notaport", "127.0.0.1", "127.0.0.1:70000",
                                    "127.0.0.1:-1", ":"])
def test_a_listen_address_that_is_not_one(listen: str, kubeconfig: Path) -> None:
    one_line_error(lora_run("--kubeconfig", str(kubeconfig), "--listen", listen), 2,
                   "--listen", "HOST:PORT")


def test_the_listen_port_in_use(kubeconfig: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = lora_run("--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{port}",
                        "--adapter-store", str(tmp_path / "store"), "--no-leader-elect")
    line = one_line_error(proc, 1, f"127.0.0.1:{port}", "--listen")
    assert TOKEN not in line


@pytest.mark.parametrize("args", [
    ["--workers", "0"], ["--workers", "-3"], ["--workers", "two"], ["--workers", "1.5"],
    ["--load-concurrency", "0"], ["--load-concurrency", "100000"],
    ["--lease-duration", "0"], ["--renew-deadline", "-1"], ["--retry-period", "nan"],
    ["--resync", "0"], ["--poll-interval", "0"], ["--poll-interval", "inf"],
    ["--discovery-ttl", "-1"], ["--vllm-timeout", "0"], ["--load-timeout", "1e9"],
])
def test_out_of_range_numbers(args: list[str], kubeconfig: Path) -> None:
    line = one_line_error(lora_run("--kubeconfig", str(kubeconfig), *args), 2, args[0])
    assert "--help" in line


@pytest.mark.parametrize(("name", "value"), [("WORKERS", "0"), ("POLL_INTERVAL", "-2"),
                                             ("LISTEN", "nohost:port")])
def test_out_of_range_environment_values(name: str, value: str, kubeconfig: Path) -> None:
    env = clean_env(**{f"LORA_CONTROLLER_{name}": value})
    one_line_error(lora_run("--kubeconfig", str(kubeconfig), env=env), 2,
                   f"--{name.lower().replace('_', '-')}")


def test_lease_timings_that_cannot_work(kubeconfig: Path) -> None:
    one_line_error(lora_run("--kubeconfig", str(kubeconfig), "--lease-duration", "5",
                            "--renew-deadline", "10"), 2, "--lease-duration", "--renew-deadline")


@pytest.mark.parametrize("flag", ["--router-token-file", "--vllm-api-key-file"])
def test_secret_files_that_are_missing_or_empty(flag: str, kubeconfig: Path, tmp_path: Path) -> None:
    one_line_error(lora_run("--kubeconfig", str(kubeconfig), flag, str(tmp_path / "missing")), 2,
                   flag, str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    one_line_error(lora_run("--kubeconfig", str(kubeconfig), flag, str(tmp_path / "empty")), 2,
                   flag, "empty")
