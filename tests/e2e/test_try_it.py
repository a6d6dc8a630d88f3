"""Trying it out without reading code (docs/try-it.md): `lora-controller dev sim-pods` makes Ready
Pods and sample adapters a controller uses and says so, and `make demo` leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import REPO, ControlPlane
from lora_controller.devenv.demo import working_folder
from lora_controller.devenv.kubectl import kubectl
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import PODS

COMMAND = [sys.executable, "-m", "lora_controller", "dev", "sim-pods"]


async def _read_until(stream: asyncio.StreamReader, marker: str, timeout: float = 60) -> str:
    text = ""
    deadline = time.monotonic() + timeout
    while marker not in text:
        line = await asyncio.wait_for(stream.readline(), timeout=max(0.1, deadline - time.monotonic()))
        if not line:
            raise AssertionError(f"the command ended before {marker!r}:\n{text}")
        text += line.decode()
    return text


def _sample_yaml(output: str) -> str:
    """The LoraAdapter the command printed (between its introduction and the next paragraph)."""
    block = output.split("kubectl apply -n", 1)[1].split("\n", 1)[1]
    return block.split("\nrun the controller", 1)[0]


async def _assert_ready_pods(kube: KubeClient, namespace: str, output: str) -> None:
    pods = (await kube.list(PODS, namespace=namespace))["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == ["sim-vllm-0", "sim-vllm-1"]
    for pod in pods:
        name = pod["metadata"]["name"]
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        assert pod["status"]["phase"] == "Running" and ready[0]["status"] == "True"
        container = pod["spec"]["containers"][0]
        assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"} in container["env"]
        assert "--enable-lora" in container["args"]
        port = container["ports"][0]["containerPort"]
        assert f"pod/{name} Ready: a vLLM simulator at http://127.0.0.1:{port}" in output


@pytest.mark.k8s
async def test_sim_pods_makes_ready_pods_and_adapters_a_controller_uses(
    control_plane: ControlPlane, namespace: str, kube: KubeClient, tmp_path: Path,
    start_controller: Callable[..., ControllerProcess],
) -> None:
    adapters = tmp_path / "samples"
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, "--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace, "--count", "2",
        "--adapters-dir", str(adapters), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=str(tmp_path))
    assert proc.stdout is not None
    try:
        output = await _read_until(proc.stdout, "READY 2 pods")
        assert f"namespace/{namespace} exists" in output
        assert f"adapters for tiny-llama in {adapters}: chat-lora, sql-lora, summary-lora" in output
        assert "Ctrl-C" in output and "deletes the Pods" in output
        await _assert_ready_pods(kube, namespace, output)
        kubectl(control_plane, "apply", "-n", namespace, "-f", "-", input=_sample_yaml(output))
        ctl = start_controller()
        await ctl.wait_ready()
        deadline = time.monotonic() + 60
        while True:
            code, body = await ctl.get(f"/v1/loraadapters/{namespace}/sim-samples")
            status = body.get("status") or {} if code == 200 else {}
            if status.get("phase") == "Ready":
                break
            assert time.monotonic() < deadline, (code, body)
            await asyncio.sleep(0.2)
        assert sorted(status["loadedAdapters"]) == ["chat-lora", "sql-lora", "summary-lora"]
        code, where = await ctl.get(f"/v1/adapters/sql-lora/pods?namespace={namespace}")
        assert code == 200 and where["pods"][0]["name"].startswith("sim-vllm-")
        proc.send_signal(signal.SIGINT)
        rest = (await asyncio.wait_for(proc.stdout.read(), timeout=30)).decode()
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        assert "deleted pod/sim-vllm-0, pod/sim-vllm-1" in rest
        assert (await kube.list(PODS, namespace=namespace))["items"] == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_sim_pods_without_a_kubeconfig_says_so_in_one_line(tmp_path: Path) -> None:
    import subprocess

    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("KUBECONFIG", None)
    proc = subprocess.run(COMMAND, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"lora-controller dev sim-pods: no kubeconfig at {tmp_path}/.kube/config: pass --kubeconfig or set "
        "KUBECONFIG (a local control plane: eval \"$(hack/kubeenv up /tmp/lora-kube)\")"]
    assert not (tmp_path / "sim-adapters").exists()


@pytest.mark.k8s
@pytest.mark.slow
def test_the_demo_runs_and_removes_its_working_folder(tmp_path: Path) -> None:
    import subprocess

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    proc = subprocess.run([sys.executable, "-m", "lora_controller.devenv.demo"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "re-placed in" in proc.stdout and '"pods"' in proc.stdout
    assert "removed (--keep keeps it)" in proc.stdout
    assert list(temp.glob("lora-demo-*")) == [], list(temp.iterdir())


def test_the_demo_keeps_its_folder_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(RuntimeError), working_folder(None, keep=False) as gone:
        (gone / "kube").mkdir()
        raise RuntimeError("a failing demo still cleans up")
    assert not gone.exists()
    with working_folder(None, keep=True) as kept:
        (kept / "controller.log").write_text("x")
    assert kept.is_dir() and f"working folder kept: {kept}" in capsys.readouterr().out
    chosen = tmp_path / "mine"
    with working_folder(str(chosen), keep=False) as folder:
        assert folder == chosen
    assert chosen.is_dir()
