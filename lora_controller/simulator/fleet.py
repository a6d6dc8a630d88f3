"""Many simulated vLLM pods in one process: one aiohttp app and runner, one listening socket per pod.

A benchmark simulates hundreds or thousands of pods on loopback ports; one app per pod would cost a
runner each, so the fleet shares a single runner and dispatches each request to the pod owning the
local address it arrived on. Stopping or restarting a pod closes only its sockets and connections.
The fleet owns its pods: it answers the simulator's control routes (`/_sim/`, module `control`) on
each pod's port before handing other requests to the pod, and is the `PodHost` a pod restarts on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp import web

from lora_controller.simulator.config import PodConfig
from lora_controller.simulator.control import handle_control
from lora_controller.simulator.pod import SimulatedPod
from lora_controller.simulator.responses import json_response

log = structlog.get_logger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class SimulatedFleet:
    """A set of `SimulatedPod`s served by one aiohttp runner."""

    def __init__(self) -> None:
        self.pods: list[SimulatedPod] = []
        self._by_address: dict[tuple[str, int], SimulatedPod] = {}
        self._by_port: dict[int, SimulatedPod] = {}
        self._sites: dict[int, list[web.SockSite]] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Set up the shared app and runner (no socket yet)."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()

    async def __aenter__(self) -> SimulatedFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        sockname: Any = request.transport.get_extra_info("sockname") if request.transport else None
        pod = None
        if sockname:
            pod = self._by_address.get((sockname[0], sockname[1])) or self._by_port.get(sockname[1])
        if pod is None:
            return json_response({"detail": "Not Found"}, status=404)
        pod.track(request.transport)
        if request.path.startswith("/_sim/") and pod.config.control_endpoint:
            return await handle_control(pod, request)
        return await pod.handle(request)

    async def add_pod(self, config: PodConfig, *, host: str = "127.0.0.1", port: int = 0) -> SimulatedPod:
        """Create a pod from `config`, load its `--lora-modules`, and listen on host:port (0 = free port)."""
        pod = SimulatedPod(config)
        await self.attach(pod, host=host, port=port)
        self.pods.append(pod)
        return pod

    async def add_pods(
        self, configs: Iterable[PodConfig], *, host: str = "127.0.0.1", ports: Iterable[int] | None = None
    ) -> list[SimulatedPod]:
        """Add several pods (free ports unless `ports` is given)."""
        config_list = list(configs)
        port_list = list(ports) if ports is not None else [0] * len(config_list)
        return [await self.add_pod(c, host=host, port=p) for c, p in zip(config_list, port_list, strict=True)]

    async def attach(self, pod: SimulatedPod, *, host: str, port: int) -> None:
        """Start serving `pod` on host:port (used by `add_pod` and by the pod's restarts)."""
        await self.start()
        assert self._runner is not None
        pod.host = self
        await pod.load_static_adapters()
        sock = _bind(host, port)
        bound = sock.getsockname()
        site = web.SockSite(self._runner, sock)
        await site.start()
        address = (bound[0], bound[1])
        self._by_address[address] = pod
        self._by_port[bound[1]] = pod
        self._sites.setdefault(id(pod), []).append(site)
        shown_host = host if host not in ("0.0.0.0", "::", "") else bound[0]
        pod.addresses.append((shown_host, bound[1]))

    async def detach(self, pod: SimulatedPod) -> None:
        """Stop listening for `pod` and drop its connections (its state is kept)."""
        for site in self._sites.pop(id(pod), []):
            await site.stop()
        for _, port in pod.addresses:
            self._by_port.pop(port, None)
        for key in [k for k, v in self._by_address.items() if v is pod]:
            del self._by_address[key]
        pod.drop_connections()
        pod.addresses.clear()

    async def remove_pod(self, pod: SimulatedPod) -> None:
        """Stop `pod` for good."""
        pod.cancel_tasks()
        await self.detach(pod)
        if pod in self.pods:
            self.pods.remove(pod)

    async def stop(self) -> None:
        """Stop every pod and the runner."""
        for pod in list(self.pods):
            pod.cancel_tasks()
            await self.detach(pod)
        self.pods.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
