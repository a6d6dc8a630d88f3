"""`lora-controller run`: wire the controller, the router API and leader election, and run them.

Every flag has a matching environment variable, `LORA_CONTROLLER_<FLAG>` (upper case, `-` as `_`),
used when the flag is not given; `--kubeconfig` also honours `KUBECONFIG`. On SIGTERM or SIGINT the
controller stops taking work, finishes the reconciles (and so the loads) in flight, releases the
Lease so a standby takes over at once, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import uuid
from pathlib import Path

import structlog
from aiohttp import web

from lora_controller.core.redaction import register_secret
from lora_controller.kube.client import KubeClient
from lora_controller.kube.leaderelection import LeaderElector
from lora_controller.reconcile.controller import ControllerConfig, LoraController
from lora_controller.server.app import RouterApi
from lora_controller.server.protocol import RouterRunner
from lora_controller.sources.store import AdapterStore
from lora_controller.vllm.client import VllmClient, create_session

log = structlog.get_logger(__name__)
ENV_PREFIX = "LORA_CONTROLLER_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Numeric defaults are strings on purpose: argparse converts a string default with the flag's
    `type`, so a bad environment value is refused like a bad flag."""
    a = parser.add_argument
    a("--kubeconfig", default=_env("kubeconfig") or os.environ.get("KUBECONFIG"),
      help="kubeconfig file (default: $KUBECONFIG, else the in-cluster service account)")
    a("--namespace", action="append", dest="namespaces",
      default=[n for n in (_env("namespace") or "").split(",") if n] or None,
      help="watch only this namespace (repeatable; default: all namespaces)")
    a("--adapter-store", default=_env("adapter_store", "/var/lib/lora-adapters"),
      help="folder where HuggingFace/S3 adapters are staged; the vLLM pods mount it at the same path")
    a("--listen", default=_env("listen", "0.0.0.0:8080"),
      help="HOST:PORT of the router API, /metrics, /healthz and /readyz")
    a("--leader-elect", action=argparse.BooleanOptionalAction,
      default=_env_bool("leader_elect", True), help="elect one active replica through a Lease")
    a("--lease-name", default=_env("lease_name", "lora-controller"))
    a("--lease-namespace", default=_env("lease_namespace") or os.environ.get("POD_NAMESPACE") or "default")
    a("--lease-duration", type=float, default=_env("lease_duration", "15"),
      help="seconds a leader's Lease is valid without renewal")
    a("--renew-deadline", type=float, default=_env("renew_deadline", "10"),
      help="seconds the leader keeps trying to renew before it stops acting")
    a("--retry-period", type=float, default=_env("retry_period", "2"),
      help="seconds between leader-election attempts")
    a("--workers", type=int, default=_env("workers", "4"), help="concurrent reconciles")
    a("--resync", type=float, default=_env("resync", "300"),
      help="seconds between full re-checks of every resource")
    a("--poll-interval", type=float, default=_env("poll_interval", "10"),
      help="seconds between reads of each pod's /v1/models (jittered)")
    a("--discovery-ttl", type=float, default=_env("discovery_ttl", "300"),
      help="seconds a source listing is reused before it is read again")
    a("--load-concurrency", type=int, default=_env("load_concurrency", "4"),
      help="concurrent adapter loads per pod")
    a("--vllm-timeout", type=float, default=_env("vllm_timeout", "10"),
      help="timeout of vLLM calls other than loads (seconds)")
    a("--load-timeout", type=float, default=_env("load_timeout", "120"),
      help="timeout of one adapter load (seconds)")
    a("--vllm-api-key-file", default=_env("vllm_api_key_file"),
      help="file holding the vLLM pods' API key (--api-key), sent as a bearer token")
    a("--router-token-file", default=_env("router_token_file"),
      help="file holding a bearer token that router API clients must send")
    a("--identity", default=_env("identity"),
      help="leader-election identity (default: hostname and a random suffix)")
    a("--advertise-url", default=_env("advertise_url"),
      help="this replica's router API URL, shown to routers by standbys (default from $POD_IP)")
    a("--log-format", choices=["json", "console"], default=_env("log_format", "console"))
    a("--log-level", default=_env("log_level", "info"),
      choices=["debug", "info", "warning", "error"])


def _read_secret_file(path: str | None) -> str | None:
    """A credential from a file, registered so that no log line can show it."""
    if not path:
        return None
    value = Path(path).read_text().strip() or None
    register_secret(value)
    return value


async def run(args: argparse.Namespace) -> int:
    host, _, port_text = args.listen.rpartition(":")
    port = int(port_text)
    advertise = args.advertise_url or (
        f"http://{os.environ['POD_IP']}:{port}" if os.environ.get("POD_IP") else None)
    identity = args.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    if advertise:
        identity = f"{identity}@{advertise}"
    kube = await KubeClient.from_config(kubeconfig=args.kubeconfig)
    session = create_session(limit=256, limit_per_host=max(args.load_concurrency + 2, 4))
    vllm = VllmClient(session=session, timeout=args.vllm_timeout, load_timeout=args.load_timeout,
                      load_concurrency_per_pod=args.load_concurrency,
                      api_key=_read_secret_file(args.vllm_api_key_file))
    store_root = Path(args.adapter_store)
    await asyncio.to_thread(store_root.mkdir, parents=True, exist_ok=True)
    store = AdapterStore(store_root)

    elector: LeaderElector | None = None
    controller: LoraController

    def may_write() -> bool:
        return elector is None or elector.is_leader

    config = ControllerConfig(
        namespaces=args.namespaces, workers=args.workers, resync=args.resync,
        poll_interval=args.poll_interval, discovery_ttl=args.discovery_ttl, identity=identity,
    )
    controller = LoraController(kube, vllm, store, config, is_leader=may_write)
    if args.leader_elect:
        elector = LeaderElector(
            kube, name=args.lease_name, namespace=args.lease_namespace, identity=identity,
            lease_duration=args.lease_duration, renew_deadline=args.renew_deadline,
            retry_period=args.retry_period, on_started_leading=controller.resync_all,
        )

    def leader_url() -> str | None:
        holder = elector.leader if elector else ""
        return holder.split("@", 1)[1] if "@" in holder else None

    api = RouterApi(controller.view, token=_read_secret_file(args.router_token_file),
                    is_leader=may_write, leader_url=leader_url, namespaces=args.namespaces)
    runner = RouterRunner(api.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host or "0.0.0.0", port)
    await site.start()
    log.info("router API listening", listen=args.listen, identity=identity,
             leader_election=args.leader_elect)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if os.environ.get("LORA_CONTROLLER_TRACEMALLOC"):
        _memory_report_on_sigusr1(loop)
    elector_task = asyncio.create_task(_elect(elector, stop)) if elector else None
    try:
        await controller.start()
        await stop.wait()
        log.info("shutting down: finishing work in flight")
    finally:
        await controller.stop()
        if elector_task is not None:
            elector_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await elector_task
        if elector is not None:
            await elector.release()
        await runner.cleanup()
        await session.close()
        await kube.close()
        log.info("stopped")
    return 0


def _memory_report_on_sigusr1(loop: asyncio.AbstractEventLoop) -> None:
    """Debugging aid: with LORA_CONTROLLER_TRACEMALLOC set, SIGUSR1 logs the biggest allocations."""
    import tracemalloc

    tracemalloc.start(8)

    def report() -> None:
        snapshot = tracemalloc.take_snapshot()
        for stat in snapshot.statistics("lineno")[:30]:
            log.warning("memory", size_kib=round(stat.size / 1024), count=stat.count,
                        where=str(stat.traceback[0]))
        log.warning("memory total", traced_mib=round(tracemalloc.get_traced_memory()[0] / 2**20, 1))

    loop.add_signal_handler(signal.SIGUSR1, report)


async def _elect(elector: LeaderElector, stop: asyncio.Event) -> None:
    """Campaign until stopped; after losing the Lease, campaign again (writes stop meanwhile)."""
    while not stop.is_set():
        await elector.run()
        if not stop.is_set():
            log.warning("leadership lost; campaigning again")
            await asyncio.sleep(1)
