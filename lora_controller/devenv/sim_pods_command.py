"""`lora-controller dev sim-pods`: simulated vLLM pods registered as Pods, and sample adapters.

To try the controller without GPUs or reading code: N vLLM simulators on loopback ports, each
registered as a Pod in the namespace of the current kubeconfig the way the controller expects a
vLLM pod (`vllm serve --enable-lora --max-loras ...`, `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, an
`http` container port), its status written Ready as a kubelet would, and sample adapter folders
for a `local` LoraAdapter. The Pods name a scheduler that does not exist, so on a cluster with
nodes no kubelet ever runs their image. It prints what it created and how to stop; on SIGINT or
SIGTERM it deletes its Pods. The demo (`make demo`) builds its pods with `start_sim_pods`.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import MODEL, Cluster, create_namespace, local_spec
from lora_controller.kube.client import KubeClient
from lora_controller.simulator.fleet import SimulatedFleet

SAMPLE_ADAPTERS = ("chat-lora", "sql-lora", "summary-lora")
SIM_SCHEDULER = "lora-sim-no-scheduler"


@dataclass(frozen=True)
class SimPodsRequest:
    """What to create: `count` pods named PREFIX-i in `namespace`, `adapters` samples in `adapters_dir`."""

    namespace: str
    count: int = 3
    model: str = MODEL
    prefix: str = "sim-vllm"
    adapters_dir: Path | None = None
    adapters: int = len(SAMPLE_ADAPTERS)
    max_loras: int = 2
    max_cpu_loras: int = 4
    load_latency_ms: float = 0.0
    nodes: bool = False


def sample_names(count: int) -> list[str]:
    """The sample adapters' names: chat-lora, sql-lora, summary-lora, then lora-3, lora-4, ..."""
    return [SAMPLE_ADAPTERS[i] if i < len(SAMPLE_ADAPTERS) else f"lora-{i}" for i in range(count)]


def sample_resource(request: SimPodsRequest, adapters_dir: Path) -> str:
    """A LoraAdapter (YAML) for the sample adapters on these pods."""
    spec = local_spec(adapters_dir.resolve(), baseModel=request.model,
                      deploymentConfig={"podSelector": {"matchLabels": {"lora-enabled": "true", "model": request.model}}})
    body = {"apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": "sim-samples"}, "spec": spec}
    return yaml.safe_dump(body, sort_keys=False)


async def start_sim_pods(
    kube: KubeClient, fleet: SimulatedFleet, request: SimPodsRequest, *, say: Callable[[str], None] = print
) -> Cluster:
    """Create the namespace if new, the adapters and the Ready pods; tell `say` about each."""
    created = await create_namespace(kube, request.namespace)
    say(f"namespace/{request.namespace} {'created' if created else 'exists'}")
    if request.adapters_dir is not None and request.adapters > 0:
        names = sample_names(request.adapters)
        write_adapters(request.adapters_dir, names, base_model=request.model)
        say(f"adapters for {request.model} in {request.adapters_dir.resolve()}: {', '.join(names)}")
    cluster = Cluster(request.namespace, kube, fleet)
    for i in range(request.count):
        name = f"{request.prefix}-{i}"
        pod = await cluster.add_pod(
            name, model=request.model, max_loras=request.max_loras, max_cpu_loras=request.max_cpu_loras,
            load_latency_ms=request.load_latency_ms, node=f"node-{i}" if request.nodes else None,
            scheduler_name=SIM_SCHEDULER)
        say(f"pod/{name} Ready: a vLLM simulator at {pod.sim.url} (model {request.model}, "
            f"max-loras {request.max_loras}, max-cpu-loras {request.max_cpu_loras}; "
            f"labels app=vllm, lora-enabled=true, model={request.model})")
    return cluster


def resolve_kubeconfig(flag: str | None) -> str:
    """--kubeconfig, else $KUBECONFIG, else ~/.kube/config, as kubectl does; ValueError when none exists."""
    path = flag or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not Path(path).is_file():
        raise ValueError(f"no kubeconfig at {path}: pass --kubeconfig or set KUBECONFIG "
                         "(a local control plane: eval \"$(hack/kubeenv up /tmp/lora-kube)\")")
    return path


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve_sim_pods(request: SimPodsRequest, *, kubeconfig: str) -> int:
    """The command: create everything, print how to use and stop it, serve until a stop signal."""
    kube = await KubeClient.from_config(kubeconfig=kubeconfig, timeout=10)
    try:
        async with SimulatedFleet() as fleet:
            cluster = await start_sim_pods(kube, fleet, request)
            try:
                if request.adapters_dir is not None and request.adapters > 0:
                    print(f"\na LoraAdapter for them (kubectl apply -n {request.namespace} -f -):\n"
                          + sample_resource(request, request.adapters_dir))
                print(f"run the controller on this machine (the pods listen on 127.0.0.1):\n"
                      f"  lora-controller run --kubeconfig {kubeconfig} --namespace {request.namespace}"
                      " --no-leader-elect --adapter-store /tmp/lora-store --listen 127.0.0.1:8080\n"
                      f"READY {len(cluster.pods)} pods; Ctrl-C (or SIGTERM) deletes the Pods and stops the "
                      "simulators (the adapters stay)", flush=True)
                await _wait_for_stop()
            finally:
                names = sorted(cluster.pods)
                await asyncio.shield(cluster.delete_pods())
                print(f"deleted {', '.join(f'pod/{n}' for n in names) or 'no pods'}", flush=True)
    finally:
        await kube.close()
    return 0
