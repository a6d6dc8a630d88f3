"""Real vLLM servers (the CPU build, no GPU) on loopback ports, registered as Pods like simulated ones.

The test suite and `bench/real_vllm.py` use this to show on vLLM itself what the simulator claims:
each server is `python -m vllm.entrypoints.openai.api_server` from the environment `hack/vllm-real`
builds, serving the tiny Llama of the conformance fixtures (nothing is downloaded: the hub is
offline) with `--enable-lora` and runtime LoRA updating on. Servers start in parallel (each takes
most of a minute and about 3 GB); a Pod object carries the exact command line, environment and
port, and its status is written as a kubelet would: Running but not Ready while vLLM starts, Ready
once `/v1/models` answers, restartCount + 1 when the container is killed and started again.
Each server runs in a process group of its own, so stopping it also stops vLLM's engine-core child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import structlog

from lora_controller.devenv.controlplane import free_port
from lora_controller.devenv.simpods import delete_pod_now, pod_manifest, set_pod_status
from lora_controller.kube.client import KubeClient
from lora_controller.kube.resources import PODS

log = structlog.get_logger(__name__)

PYTHON_ENV = "LORA_VLLM_PYTHON"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
START_TIMEOUT = 600.0  # seconds; 40-90 s is usual on 2 cores, several servers at once take longer
# Every server runs offline (nothing is downloaded, no usage report); ServerConfig adds a 1 GiB KV
# cache, the smallest VLLM_CPU_KVCACHE_SPACE (the model is tiny).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
BASE_ENV = {**OFFLINE_ENV, "VLLM_CPU_KVCACHE_SPACE": "1"}


def vllm_python() -> str:
    """The python of the real-vLLM environment: $LORA_VLLM_PYTHON (printed by `hack/vllm-real`)."""
    path = os.environ.get(PYTHON_ENV, "")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"${PYTHON_ENV} is {path or 'unset'}: run `hack/vllm-real` (it builds the real-vLLM "
            f"environment once and prints its python) and export {PYTHON_ENV}=<that path>")
    return path


@dataclass(frozen=True)
class ServerConfig:
    """The vLLM flags and environment of one server."""

    model_dir: str
    served_model_name: str = "tiny-llama"
    max_loras: int = 2
    max_cpu_loras: int = 4
    max_lora_rank: int = 8
    max_model_len: int = 256
    runtime_updates: bool = True
    extra_args: tuple[str, ...] = ()

    def args(self) -> tuple[str, ...]:
        """The flags after `python -m vllm.entrypoints.openai.api_server` (host and port apart)."""
        return ("--model", self.model_dir, "--served-model-name", self.served_model_name,
                "--enable-lora", "--max-loras", str(self.max_loras),
                "--max-cpu-loras", str(self.max_cpu_loras), "--max-lora-rank", str(self.max_lora_rank),
                "--dtype", "float32", "--max-model-len", str(self.max_model_len),
                "--max-num-seqs", "4", *self.extra_args)

    def env(self) -> dict[str, str]:
        """The variables vLLM reads (runtime updating only when on, as in a pod spec)."""
        extra = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"} if self.runtime_updates else {}
        return {**BASE_ENV, **extra}


@dataclass
class RealVllmServer:
    """One real vLLM API server process (and its engine-core child) on a loopback port."""

    python: str
    flags: tuple[str, ...]  # what follows the module name, without --host/--port
    env: dict[str, str]  # added to this process's environment (runtime updating only from here)
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def of(cls, python: str, config: ServerConfig, log_path: Path) -> RealVllmServer:
        return cls(python, config.args(), config.env(), log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        return [self.python, "-m", SERVER_MODULE]

    @property
    def args(self) -> list[str]:
        return [*self.flags, "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self) -> None:
        """Start the process (returns at once; `wait_ready` waits for vLLM)."""
        env = {k: v for k, v in os.environ.items() if k != "VLLM_ALLOW_RUNTIME_LORA_UPDATING"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.command, *self.args], stdout=out, stderr=subprocess.STDOUT,
                env={**env, **OFFLINE_ENV, **self.env}, start_new_session=True)
        log.info("realvllm.start", port=self.port, pid=self.proc.pid)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Seconds until `/v1/models` answers 200; raises with the log's tail if vLLM exits."""
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < timeout:
                if not self.running:
                    raise RuntimeError(f"vLLM on port {self.port} exited:\n{self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.url + "/v1/models",
                                           timeout=aiohttp.ClientTimeout(total=5)) as r:
                        if r.status == 200:
                            return time.monotonic() - started
                await asyncio.sleep(0.5)
        raise TimeoutError(f"vLLM on port {self.port} not ready in {timeout:g} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crashed or OOM-killed container."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after `grace` seconds."""
        if not self.running:
            self._signal(signal.SIGKILL)  # an engine-core child may outlive its parent
            return
        self._signal(signal.SIGTERM)
        assert self.proc is not None
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def pids(self) -> list[int]:
        """The API server's pid and all its descendants' (the engine core and its helpers)."""
        if not self.running:
            return []
        assert self.proc is not None
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in task.read_text().split()]
        return found

    def rss_mib(self) -> float:
        """Resident memory of the server with its children, in MiB."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        return total / 1024

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def start_servers(servers: Sequence[RealVllmServer], *, timeout: float = START_TIMEOUT) -> list[float]:
    """Start servers in parallel and wait until all answer; on any failure all are stopped."""
    for server in servers:
        server.start()
    try:
        return list(await asyncio.gather(*(s.wait_ready(timeout) for s in servers)))
    except BaseException:
        await stop_servers(servers)
        raise


async def stop_servers(servers: Sequence[RealVllmServer]) -> None:
    await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))


@dataclass
class RealPod:
    """A Pod backed by a real vLLM server."""

    name: str
    server: RealVllmServer
    restarts: int = 0


@dataclass
class RealVllmPods:
    """Real vLLM servers registered as Pods of one namespace of a real API server."""

    kube: KubeClient
    namespace: str
    pods: dict[str, RealPod] = field(default_factory=dict)

    async def add(self, python: str, names: Sequence[str], config: ServerConfig, *, log_dir: Path,
                  labels: dict[str, str] | None = None) -> list[RealPod]:
        """Start one server per name in parallel; each Pod turns Ready when its vLLM answers."""
        servers = [RealVllmServer.of(python, config, log_dir / f"{n}.log") for n in names]
        for server in servers:
            server.start()
        try:
            return list(await asyncio.gather(*(
                self.register(n, s, model=config.served_model_name, labels=labels)
                for n, s in zip(names, servers, strict=True))))
        except BaseException:
            await stop_servers(servers)
            raise

    async def register(self, name: str, server: RealVllmServer, *, model: str,
                       labels: dict[str, str] | None = None) -> RealPod:
        """A Pod for a started server: not Ready until its vLLM answers, then Ready."""
        pod = RealPod(name, server)
        self.pods[name] = pod
        manifest = pod_manifest(name, port=server.port, model=model, labels={
            "app": "vllm", "lora-enabled": "true", "model": model, **(labels or {})})
        container = manifest["spec"]["containers"][0]
        container["command"] = server.command
        container["args"] = server.args
        container["env"] = [{"name": k, "value": v} for k, v in sorted(server.env.items())]
        await self.kube.create(PODS, manifest, namespace=self.namespace)
        await self._status(pod, ready=False)
        await self._wait_then_ready(pod)
        return pod

    async def _status(self, pod: RealPod, *, ready: bool) -> None:
        await set_pod_status(self.kube, self.namespace, pod.name, ready=ready, restarts=pod.restarts)

    async def _wait_then_ready(self, pod: RealPod) -> None:
        seconds = await pod.server.wait_ready()
        await self._status(pod, ready=True)
        log.info("realvllm.ready", pod=pod.name, port=pod.server.port, seconds=round(seconds, 1))

    async def kill(self, name: str) -> None:
        """The vLLM container dies: the kubelet marks the pod not Ready and counts a restart."""
        pod = self.pods[name]
        await asyncio.to_thread(pod.server.kill)
        pod.restarts += 1
        await self._status(pod, ready=False)

    async def start_again(self, name: str) -> None:
        """The kubelet starts the container again: same pod, port and flags; Ready when it answers."""
        pod = self.pods[name]
        pod.server.start()
        await self._wait_then_ready(pod)

    async def restart(self, name: str) -> None:
        await self.kill(name)
        await self.start_again(name)

    async def delete(self, name: str) -> None:
        """Delete the Pod; the server goes on (it may be shared with other namespaces)."""
        self.pods.pop(name)
        await delete_pod_now(self.kube, self.namespace, name)

    async def close(self) -> None:
        """Stop the servers of this namespace's Pods."""
        await stop_servers([p.server for p in self.pods.values()])
