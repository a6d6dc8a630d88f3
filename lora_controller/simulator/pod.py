"""One simulated vLLM server: its routes, its faults, and its restarts.

Behaviour follows vLLM 0.32's code paths: the LoRA registry and the engine's load path in
`registry`, the runtime LoRA routes in `lora_routes`, `/v1/models` and `/v1/completions` in
`openai_routes`, running requests and `/metrics` in `engine`, and here FastAPI's routing (404, 405
with `Allow`, 307 for a trailing slash), the API key check and the injected faults, so that a client
meets the statuses, content types and messages a real pod sends. A pod serves nothing by itself: a
`SimulatedFleet` owns it, listens for it and attaches it again after a restart (the `PodHost` it is
given); state for tests is served by the fleet under `/_sim/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from aiohttp import web

from lora_controller.simulator.adapter_files import LLAMA_LORA_MODULES
from lora_controller.simulator.config import VLLM_VERSION, PodConfig
from lora_controller.simulator.engine import Engine
from lora_controller.simulator.errors import vllm_error
from lora_controller.simulator.lora_routes import PATH_PARAMS, LoraRoutes
from lora_controller.simulator.openai_routes import OpenAIRoutes
from lora_controller.simulator.registry import LoadEvent, LoraRegistry, RegisteredAdapter
from lora_controller.simulator.responses import (
    BodyError,
    bare,
    json_response,
    method_not_allowed,
    not_found,
)
from lora_controller.simulator.tokenizer import Tokenizer

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LLAMA_ARCHS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


class PodHost(Protocol):
    """What serves a pod's sockets (a `SimulatedFleet`): a restart detaches and attaches again."""

    async def attach(self, pod: SimulatedPod, *, host: str, port: int) -> None: ...

    async def detach(self, pod: SimulatedPod) -> None: ...


def _read_base_config(model_dir: str | None) -> dict[str, Any]:
    if not model_dir:
        return {}
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class SimulatedPod:
    """A vLLM server simulator; a `SimulatedFleet` serves it (`fleet.add_pod(config)`)."""

    def __init__(self, config: PodConfig) -> None:
        self.config = config.with_faults()
        self.faults = self.config.faults
        self._rng = random.Random(config.seed)
        self.request_counts: Counter[str] = Counter()
        self.restarts = 0
        self.started_at = time.time()
        self.addresses: list[tuple[str, int]] = []
        self.host: PodHost | None = None
        self.static_loaded = False
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[None]] = set()
        model_dir = config.model if os.path.isdir(config.model) else None
        base_config = _read_base_config(model_dir)
        self.max_model_len = config.max_model_len or int(base_config.get("max_position_embeddings") or 2048)
        archs = base_config.get("architectures") or []
        expected = LLAMA_LORA_MODULES if any(a in _LLAMA_ARCHS for a in archs) or not model_dir else None
        self.tokenizer = Tokenizer.from_model_dir(config.model) if model_dir else Tokenizer()
        fingerprint = hashlib.sha256(
            json.dumps(
                [config.model, config.max_loras, config.cpu_loras, config.max_lora_rank, self.max_model_len]
            ).encode()
        ).hexdigest()[:8]
        self.registry = LoraRegistry(self.config, self.faults, expected)
        self.engine = Engine(self.config, self.faults, self.tokenizer, self.registry)
        self.openai = OpenAIRoutes(
            self.config, self.registry, self.engine, max_model_len=self.max_model_len, fingerprint=fingerprint
        )
        self._lora = LoraRoutes(self.registry)
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ state others read
    @property
    def adapters(self) -> dict[str, RegisteredAdapter]:
        """Registered adapters in registration order (what `/v1/models` lists after the base models)."""
        return self.registry.adapters

    @property
    def load_log(self) -> list[LoadEvent]:
        """Every load and unload handled, with its timestamps and status."""
        return self.registry.load_log

    @property
    def max_concurrent_loads(self) -> int:
        """The most loads the engine ran at once."""
        return self.registry.max_concurrent_loads

    @property
    def port(self) -> int:
        """The first port the pod listens on."""
        return self.addresses[0][1]

    @property
    def url(self) -> str:
        """Base URL of the first address."""
        host, port = self.addresses[0]
        return f"http://{host}:{port}"

    def model_list(self) -> dict[str, Any]:
        """The `/v1/models` body."""
        return self.openai.model_list()

    def metrics_text(self) -> str:
        """The `/metrics` body."""
        return self.engine.metrics_text()

    # ------------------------------------------------------------------ lifecycle
    async def load_static_adapters(self) -> None:
        """Load `--lora-modules` once per start, as vLLM's `init_static_loras`; a failure aborts the start."""
        if not self.static_loaded:
            await self.registry.load_static()
            self.static_loaded = True

    async def restart(self, *, downtime: float = 0.0) -> None:
        """A vLLM restart: connections dropped, runtime-loaded adapters forgotten, `--lora-modules` reloaded."""
        host = self.host
        addresses = list(self.addresses)
        if host is not None:
            await host.detach(self)
        self.registry.forget()
        self.engine.forget()
        self.static_loaded = False
        self.restarts += 1
        if downtime > 0:
            await asyncio.sleep(downtime)
        self.started_at = time.time()
        if host is not None:
            for address, port in addresses:
                await host.attach(self, host=address, port=port)
        log.info("sim_pod_restarted", addresses=addresses, downtime=downtime)

    def track(self, transport: asyncio.BaseTransport | None) -> None:
        """Remember a connection so a restart can drop it."""
        if transport is not None:
            self._transports.add(transport)

    def drop_connections(self) -> None:
        """Close every connection of this pod (what a dying server does to its clients)."""
        for transport in list(self._transports):
            transport.close()
        self._transports = weakref.WeakSet()

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run `coro` in the background, kept alive until done or `cancel_tasks`."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_tasks(self) -> None:
        """Cancel what `spawn` started (the pod is going away)."""
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ routing
    def _build_routes(self) -> dict[str, dict[str, Handler]]:
        routes: dict[str, dict[str, Handler]] = {
            "/health": {"GET": self._health},
            "/ping": {"GET": self._health, "POST": self._health},
            "/version": {"GET": self._version},
            "/metrics": {"GET": self._metrics},
            "/v1/models": {"GET": self.openai.models},
            "/v1/completions": {"POST": self.openai.completions},
        }
        if self.config.runtime_lora_updating:
            routes["/v1/load_lora_adapter"] = {"POST": self._lora.load}
            routes["/v1/unload_lora_adapter"] = {"POST": self._lora.unload}
            routes["/adapters"] = {"POST": self._lora.sagemaker_register}
        return routes

    def _match(self, path: str) -> tuple[dict[str, Handler] | None, dict[str, str]]:
        methods = self._routes.get(path)
        if methods is not None:
            return methods, {}
        if self.config.runtime_lora_updating and path.startswith("/adapters/"):
            name = path[len("/adapters/") :]
            if name and "/" not in name:
                return {"DELETE": self._lora.sagemaker_unregister}, {"adapter_name": name}
        return None, {}

    def _unauthorized(self, request: web.Request) -> bool:
        return bool(
            self.config.api_key
            and request.path.startswith("/v1")
            and request.method != "OPTIONS"
            and request.headers.get("Authorization", "") != f"Bearer {self.config.api_key}"
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request as the vLLM server would."""
        path = request.path
        if self._unauthorized(request):
            self.request_counts["401"] += 1
            return json_response({"error": "Unauthorized"}, status=401)
        methods, params = self._match(path)
        if methods is None:
            alternative = path[:-1] if path.endswith("/") and path != "/" else path + "/"
            if self._match(alternative)[0] is not None:
                location = str(request.url.with_path(alternative))
                return bare(307, headers={"Location": location})
            self.request_counts["404"] += 1
            return not_found()
        method = "GET" if request.method == "HEAD" and "GET" in methods else request.method
        handler = methods.get(method)
        if handler is None:
            allowed = sorted({*methods, *(["HEAD"] if "GET" in methods else [])})
            self.request_counts["405"] += 1
            return method_not_allowed(allowed)
        route = f"{method} {path if not params else '/adapters/{adapter_name}'}"
        self.request_counts[route] += 1
        faulty = await self._apply_faults()
        if faulty is not None:
            return faulty
        request[PATH_PARAMS] = params
        try:
            return await handler(request)
        except BodyError as rejected:
            return rejected.response

    async def _apply_faults(self) -> web.StreamResponse | None:
        knobs = self.faults
        if knobs.hang_rate > 0 and knobs.hang_seconds > 0 and self._rng.random() < knobs.hang_rate:
            await asyncio.sleep(knobs.hang_seconds)
        if knobs.error_rate_500 > 0 and self._rng.random() < knobs.error_rate_500:
            return json_response(
                vllm_error("Simulated internal server error", err_type="InternalServerError", code=500), status=500
            )
        return None

    # ------------------------------------------------------------------ simple routes
    async def _health(self, request: web.Request) -> web.StreamResponse:
        return bare(503 if self.faults.unhealthy else 200)

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return json_response({"version": VLLM_VERSION})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.engine.metrics_text().encode(),
            headers={"Content-Type": "text/plain; version=1.0.0; charset=utf-8"},
        )

    # ------------------------------------------------------------------ state for tests
    def state(self) -> dict[str, Any]:
        """What `/_sim/state` serves."""
        return {
            "addresses": [f"{h}:{p}" for h, p in self.addresses],
            "model": self.config.model,
            "served_model_names": list(self.config.names),
            "max_loras": self.config.max_loras,
            "max_cpu_loras": self.config.cpu_loras,
            "max_lora_rank": self.config.max_lora_rank,
            "runtime_lora_updating": self.config.runtime_lora_updating,
            "adapters": [
                {"name": a.name, "path": a.path, "rank": a.files.rank, "static": a.static, "loaded_at": a.loaded_at}
                for a in self.adapters.values()
            ],
            "load_log": [e.__dict__ for e in self.load_log],
            "max_concurrent_loads": self.max_concurrent_loads,
            "request_counts": dict(self.request_counts),
            "restarts": self.restarts,
            "started_at": self.started_at,
            "faults": self.faults.as_dict(),
        }

    def reset_stats(self) -> None:
        """Clear the load log, request counts and the concurrency high-water mark."""
        self.registry.reset_stats()
        self.request_counts.clear()
