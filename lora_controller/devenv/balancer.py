"""A Service on loopback: one address in front of several controller replicas, for failover runs.

In a cluster, routers reach the controller through the chart's Service: kube-proxy spreads
connections over the replicas whose readiness probe (`/readyz`) passes, and a load balancer in front
of it (Envoy, nginx) retries an idempotent request whose connection failed on another endpoint.
`Balancer` does the same on one machine: round robin over ready replicas, `/readyz` probed every
`probe_interval` seconds, a replica whose connection fails or resets taken out at once (until its
probe passes again) and the request sent to the next one. It counts what it did, so a run can say
how many requests a dead replica cost (`retried`) and how many found no replica (`failed`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from lora_controller.devenv.controlplane import free_port

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                         "content-encoding", "host"})


@dataclass
class Backend:
    name: str
    url: str
    ready: bool = False
    ready_since: float | None = None  # loop time it last became ready


@dataclass
class BalancerStats:
    served: Counter[str] = field(default_factory=Counter)  # replica name -> answers relayed
    retried: int = 0  # requests sent again to another replica after a connection failure
    failed: int = 0  # requests no ready replica could answer (503)


class Balancer:
    """Round robin over ready backends, with readiness probes and retries on connection errors."""

    def __init__(self, *, probe_interval: float = 0.2, timeout: float = 10.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backends: dict[str, Backend] = {}
        self.stats = BalancerStats()
        self.probe_interval = probe_interval
        self.timeout = timeout
        self._turn = 0
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._probe: asyncio.Task[None] | None = None

    # -- endpoints ------------------------------------------------------------------------------
    def set_backend(self, name: str, url: str) -> None:
        """Add (or replace: a restarted replica has a new address) a backend, not ready yet."""
        self.backends[name] = Backend(name, url)

    def ready(self, name: str) -> bool:
        backend = self.backends.get(name)
        return backend is not None and backend.ready

    def _next(self, tried: set[str]) -> Backend | None:
        names = sorted(self.backends)
        for i in range(len(names)):
            backend = self.backends[names[(self._turn + i) % len(names)]]
            if backend.ready and backend.name not in tried:
                self._turn = (self._turn + i + 1) % len(names)
                return backend
        return None

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> Balancer:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=self.timeout))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._probe = asyncio.create_task(self._probe_loop(), name="balancer probes")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.gather(*(self._probe_one(b) for b in list(self.backends.values())))
            await asyncio.sleep(self.probe_interval)

    async def _probe_one(self, backend: Backend) -> None:
        assert self._session is not None
        try:
            async with self._session.get(backend.url + "/readyz",
                                         timeout=aiohttp.ClientTimeout(total=1)) as r:
                ok = r.status == 200
                await r.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            ok = False
        if ok and not backend.ready:
            backend.ready_since = asyncio.get_running_loop().time()
        backend.ready = ok

    # -- relaying ---------------------------------------------------------------------------------
    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        tried: set[str] = set()
        while (backend := self._next(tried)) is not None:
            try:
                async with self._session.request(request.method, backend.url + request.path_qs,
                                                 data=body or None, headers=headers) as r:
                    payload = await r.read()
                    out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_BY_HOP}
            except (aiohttp.ClientConnectionError, OSError):
                backend.ready = False  # out of rotation until its probe passes again
                if request.method not in ("GET", "HEAD"):  # not idempotent: not sent twice
                    break
                tried.add(backend.name)
                self.stats.retried += 1
                continue
            self.stats.served[backend.name] += 1
            return web.Response(status=r.status, body=payload, headers=out)
        self.stats.failed += 1
        return web.json_response({"error": {"reason": "NoReadyReplica",
                                            "message": "no ready controller replica"}}, status=503)
