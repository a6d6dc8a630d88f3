"""`lora-controller run`: wire the controller, the router API and leader election, and run them.

The flags are in `cli/flags.py`. Building happens before anything runs: credentials and files are
read, the router API starts listening, and only then does the controller reconcile; a mistake found
while building (no kubeconfig, a port in use) is one line on stderr and an exit status, with every
part built so far closed. On SIGTERM or SIGINT the controller stops taking work, finishes the
reconciles (and so the loads) in flight, releases the Lease so a standby takes over at once, and
exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from lora_controller.cli.flags import split_listen
from lora_controller.core.redaction import redact, register_secret
from lora_controller.kube.client import KubeClient
from lora_controller.kube.leaderelection import JITTER, LeaderElector
from lora_controller.reconcile.controller import ControllerConfig, LoraController
from lora_controller.server.app import RouterApi
from lora_controller.server.protocol import RouterRunner
from lora_controller.sources.store import AdapterStore
from lora_controller.vllm.client import VllmClient, create_session

log = structlog.get_logger(__name__)


class StartupError(Exception):
    """Why the controller cannot start, in one line that says what to do. `status` is the exit
    status: 2 when the command line, the environment or a file they name is wrong, 1 when
    something failed at run time."""

    def __init__(self, message: str, *, status: int = 1) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status


@dataclass
class _Started:
    """What `_build` made, for `_serve` to run and stop."""

    controller: LoraController
    elector: LeaderElector | None


async def run(args: argparse.Namespace) -> int:
    """Build, serve until SIGTERM or SIGINT, stop. Whatever was built is closed in reverse order,
    also when building fails half-way; such a failure is one line on stderr."""
    async with contextlib.AsyncExitStack() as resources:
        try:
            started = await _build(args, resources)
        except StartupError as err:
            sys.stderr.write(f"lora-controller run: error: {redact(str(err))}\n")
            return err.status
        await _serve(started)
    log.info("stopped")
    return 0


async def _build(args: argparse.Namespace, resources: contextlib.AsyncExitStack) -> _Started:
    """Every part wired and the router API listening; nothing reconciles yet."""
    _check_lease_timings(args)
    host, port = split_listen(args.listen)
    advertise = args.advertise_url or (
        f"http://{os.environ['POD_IP']}:{port}" if os.environ.get("POD_IP") else None)
    identity = args.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    if advertise:
        identity = f"{identity}@{advertise}"
    router_token = _read_secret_file("--router-token-file", args.router_token_file)
    kube, vllm, store = await _clients(args, resources)

    elector: LeaderElector | None = None
    controller: LoraController

    def may_write() -> bool:
        return elector is None or elector.is_leader

    config = ControllerConfig(
        namespaces=args.namespaces, workers=args.workers, resync=args.resync,
        poll_interval=args.poll_interval, discovery_ttl=args.discovery_ttl, identity=identity,
        action_wait=args.action_wait, scale_down_delay=args.scale_down_delay,
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

    api = RouterApi(controller.view, token=router_token, is_leader=may_write,
                    leader_url=leader_url, namespaces=args.namespaces)
    await _listen(RouterRunner(api.app(), access_log=None, handle_signals=False), host, port,
                  args.listen, resources)
    log.info("router API listening", listen=args.listen, identity=identity,
             leader_election=args.leader_elect)
    return _Started(controller, elector)


async def _clients(args: argparse.Namespace, resources: contextlib.AsyncExitStack,
                   ) -> tuple[KubeClient, VllmClient, AdapterStore]:
    """The API server's client, the vLLM pods' client and the adapter store."""
    api_key = _read_secret_file("--vllm-api-key-file", args.vllm_api_key_file)
    kube = await _kube_client(args.kubeconfig)
    resources.push_async_callback(kube.close)
    # aiohttp's `limit` bounds connections in use, not idle ones: after a burst of loads every pod
    # keeps its connections open until the keep-alive runs out (about 4 per pod, 14 MiB of the
    # controller at 1,000 pods). A second covers a burst (each load slot reuses its connection at
    # once); a pod's next poll is seconds away and would not reuse it anyway.
    session = create_session(limit=256, limit_per_host=max(args.load_concurrency + 2, 4),
                             keepalive_timeout=1.0)
    resources.push_async_callback(session.close)
    vllm = VllmClient(session=session, timeout=args.vllm_timeout, load_timeout=args.load_timeout,
                      load_concurrency_per_pod=args.load_concurrency, api_key=api_key)
    store_root = Path(args.adapter_store)
    try:
        await asyncio.to_thread(store_root.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create --adapter-store {store_root}: {exc.strerror}; give a "
                           f"folder this process may write") from None
    return kube, vllm, AdapterStore(store_root)


def _check_lease_timings(args: argparse.Namespace) -> None:
    if args.leader_elect and not (
            args.lease_duration > args.renew_deadline > args.retry_period * JITTER):
        raise StartupError(
            f"--lease-duration ({args.lease_duration:g}) must be more than --renew-deadline "
            f"({args.renew_deadline:g}), itself more than {JITTER:g} x --retry-period "
            f"({args.retry_period:g}); client-go's defaults are 15, 10 and 2", status=2)


async def _kube_client(kubeconfig: str | None) -> KubeClient:
    """The API server's client, from the kubeconfig (or in the cluster), read, not contacted."""
    if kubeconfig and not await asyncio.to_thread(Path(kubeconfig).is_file):
        raise StartupError(f"kubeconfig {kubeconfig} (--kubeconfig, or KUBECONFIG) does not exist; "
                           f"give the path of a kubeconfig file", status=2)
    try:
        return await KubeClient.from_config(kubeconfig=kubeconfig, pool_size=16)
    except Exception as exc:  # the config loader's errors: ConfigException, YAML, file, type
        if not kubeconfig:
            raise StartupError(
                f"no Kubernetes credentials: not running in a cluster ({exc}) and no kubeconfig; "
                f"give --kubeconfig PATH or set KUBECONFIG", status=2) from None
        raise StartupError(f"cannot use kubeconfig {kubeconfig}: {exc}; fix it or give another "
                           f"--kubeconfig", status=2) from None


async def _listen(runner: web.AppRunner, host: str, port: int, listen: str,
                  resources: contextlib.AsyncExitStack) -> None:
    await runner.setup()
    resources.push_async_callback(runner.cleanup)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise StartupError(f"cannot listen on {listen}: {exc.strerror or exc}; stop what holds "
                           f"that address or give another --listen") from None


def _read_secret_file(flag: str, path: str | None) -> str | None:
    """A credential from a file, registered so that no log line can show it."""
    if not path:
        return None
    try:
        value = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise StartupError(f"cannot read {flag} {path}: {reason}; give a readable file",
                           status=2) from None
    if not value:
        raise StartupError(f"{flag} {path} is empty; put the secret in it or leave {flag} out",
                           status=2)
    register_secret(value)
    return value


async def _serve(started: _Started) -> None:
    """Reconcile (and campaign for the Lease) until SIGTERM or SIGINT, then stop in order."""
    controller, elector = started.controller, started.elector
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
