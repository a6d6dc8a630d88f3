"""`python -m lora_controller run` as a child process, the way it runs in a cluster.

Tests, benchmarks and the demo run the controller as its own process against a real API server:
its flags, its signal handling and its exit are part of what they exercise. It listens on a free
loopback port; its log (JSON) goes to a file the caller names.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from lora_controller.devenv.controlplane import REPO, ControlPlane, free_port


class ControllerProcess:
    """One `lora-controller run` process: start, wait until ready, ask its API, stop."""

    def __init__(
        self,
        cp: ControlPlane | None,
        *,
        store: Path,
        log_path: Path,
        namespace: str | None = None,
        extra: Sequence[str] = (),
        kubeconfig: Path | None = None,
        env: Mapping[str, str] | None = None,
        poll_interval: float | None = 1,
        resync: float | None = 30,
        log_level: str = "debug",
    ) -> None:
        config = kubeconfig or (cp.kubeconfig if cp is not None else None)
        if config is None:
            raise ValueError("a control plane or a kubeconfig is needed")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = [
            sys.executable, "-m", "lora_controller", "run", "--kubeconfig", str(config),
            "--adapter-store", str(store), "--listen", f"127.0.0.1:{self.port}",
            *(["--poll-interval", f"{poll_interval:g}"] if poll_interval is not None else []),
            *(["--resync", f"{resync:g}"] if resync is not None else []),
            "--log-format", "json", "--log-level", log_level,
            *(["--namespace", namespace] if namespace else []),
            *extra,
        ]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (the controller must have been started)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self) -> ControllerProcess:
        """Start the process, its output appended to `log_path`."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO), env=self.env)
        return self

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until `/readyz` answers 200; fails with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    async with s.get(self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"controller not ready: {self.tail()}")

    async def get(self, path: str, *, token: str | None = None) -> tuple[int, Any]:
        """GET `path` of the controller's API: (status, decoded JSON or text)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as s, s.get(
            self.url + path, headers=headers, timeout=aiohttp.ClientTimeout(total=90)
        ) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """Send `sig` and wait for the exit (killed after `timeout`); returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a node failure would."""
        self.stop(signal.SIGKILL)

    def tail(self, n: int = 60) -> str:
        """The last `n` lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
