"""A hostile vLLM pod on loopback: it answers every load and unload with success and lists what
it chooses on `/v1/models` (nothing it was asked to load, or adapters nobody loaded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class LyingPod:
    listed: dict[str, str] = field(default_factory=dict)  # what /v1/models lists: name -> root
    calls: dict[str, int] = field(default_factory=dict)  # path -> count
    hang: float = 0.0  # seconds each load and unload takes
    port: int = 0

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": "tiny-llama", "object": "model", "root": "tiny-llama", "parent": None}]
        data += [{"id": n, "object": "model", "root": r, "parent": "tiny-llama"}
                 for n, r in self.listed.items()]
        return web.json_response({"object": "list", "data": data})

    async def action(self, request: web.Request) -> web.Response:
        self.calls[request.path] = self.calls.get(request.path, 0) + 1
        if self.hang:
            await asyncio.sleep(self.hang)
        return web.Response(text="Success: LoRA adapter loaded successfully.")


@asynccontextmanager
async def lying_pod(**kwargs: object) -> AsyncIterator[LyingPod]:
    pod = LyingPod(**kwargs)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_get("/v1/models", pod.models)
    app.router.add_post("/v1/load_lora_adapter", pod.action)
    app.router.add_post("/v1/unload_lora_adapter", pod.action)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    pod.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield pod
    finally:
        await runner.cleanup()
