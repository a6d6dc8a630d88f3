"""A real Prometheus server and promtool (Debian's build, fetched by hack/prometheus) for the
metrics tests: started on loopback with a scrape config and rule files, queried through its HTTP
API, stopped at the end."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from lora_controller.devenv.controlplane import free_port

REPO = Path(__file__).resolve().parents[2]


def tools() -> Path:
    """The folder holding `prometheus` and `promtool`: $LORA_PROMETHEUS_DIR, else hack/prometheus."""
    folder = os.environ.get("LORA_PROMETHEUS_DIR")
    if not folder:
        proc = subprocess.run([str(REPO / "hack" / "prometheus")], capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"hack/prometheus failed: {proc.stderr[-2000:]}"
        folder = proc.stdout.strip().splitlines()[-1]
    return Path(folder)


def promtool(*args: str, input: str | None = None, cwd: Path | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools() / "promtool"), *args], input=input, capture_output=True,
                          text=True, timeout=120, cwd=cwd)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (or scalar, as one sample)."""
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        data = doc["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        """The single value of a query that returns one sample, None for no sample."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def by(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}


@contextmanager
def prometheus(workdir: Path, targets: Sequence[str], *, rules: Sequence[Path] = (),
               ) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` (host:port) every second, with `rules` evaluated every
    second; returns once it answers."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(r) for r in rules],
        "scrape_configs": [{"job_name": "lora-controller",
                            "static_configs": [{"targets": list(targets)}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([
        str(tools() / "prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h", "--log.level=warn"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "Prometheus not ready in 60 s"
            time.sleep(0.2)
        yield Prometheus(url)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
