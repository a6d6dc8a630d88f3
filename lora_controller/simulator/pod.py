"""One simulated vLLM server: its adapter registry, its engine's load path, its routes and its faults.

Behaviour follows vLLM 0.32's code paths (`OpenAIServingModels.load_lora_adapter` check order, the
worker's file checks in `adapter_files`, FastAPI's routing and body validation in `responses`), so
that a client meets here the statuses, content types and messages a real pod sends. State a test
or benchmark wants to read (registered adapters in order, a load log with timestamps, the most
concurrent loads seen, request counts per route) is kept on the object and served under `/_sim/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import secrets
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from lora_controller.simulator.adapter_files import (
    LLAMA_LORA_MODULES,
    AdapterFiles,
    AdapterLoadError,
    AdapterNotFound,
    read_adapter,
)
from lora_controller.simulator.config import VLLM_VERSION, PodConfig
from lora_controller.simulator.errors import http_exception_body, sanitize_message, vllm_error
from lora_controller.simulator.protocol import (
    COMPLETION,
    LOAD_ADAPTER,
    UNLOAD_ADAPTER,
    CompletionRequest,
    LoadLoRAAdapterRequest,
    SageMakerRegisterLoRAAdapterRequest,
    UnloadLoRAAdapterRequest,
)
from lora_controller.simulator.responses import (
    BodyError,
    bare,
    json_response,
    method_not_allowed,
    not_found,
    read_json_body,
)
from lora_controller.simulator.tokenizer import Tokenizer

if TYPE_CHECKING:
    from lora_controller.simulator.fleet import SimulatedFleet

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAGEMAKER_ALIAS_HEADER = "X-Amzn-SageMaker-Adapter-Alias"
PATH_PARAMS = web.RequestKey("path_params", dict)
_LLAMA_ARCHS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


class SimulatorStartError(RuntimeError):
    """The server would not have started (a `--lora-modules` adapter failed to load)."""


@dataclass
class RegisteredAdapter:
    """An adapter in the front end's registry (what `/v1/models` lists)."""

    name: str
    path: str
    int_id: int
    files: AdapterFiles
    loaded_at: float
    static: bool = False
    base_model_name: str | None = None


@dataclass(frozen=True)
class LoadEvent:
    """One load or unload the pod handled, for tests and benchmarks."""

    at: float
    finished_at: float
    action: str  # "load" | "unload"
    name: str
    path: str | None
    status: int
    inplace: bool = False


@dataclass
class _InFlight:
    adapter: str | None
    started: float = field(default_factory=time.monotonic)
    active: bool = False


def go_float(value: float) -> str:
    """A sample value as the Prometheus text format writes it (`1.7958602355392084e+09`)."""
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


class SimulatedPod:
    """A vLLM server simulator; start it alone (`start`) or inside a `SimulatedFleet`."""

    def __init__(self, config: PodConfig) -> None:
        self.config = config.with_faults()
        self.faults = self.config.faults
        self._rng = random.Random(config.seed)
        self.adapters: dict[str, RegisteredAdapter] = {}
        self.load_log: list[LoadEvent] = []
        self.request_counts: Counter[str] = Counter()
        self.max_concurrent_loads = 0
        self.restarts = 0
        self.started_at = time.time()
        self.addresses: list[tuple[str, int]] = []
        self._loads_in_flight = 0
        self._id_counter = 0
        self._name_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._inflight: list[_InFlight] = []
        self._slot_change = asyncio.Condition()
        self._lora_series: dict[tuple[str, str], float] = {}
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._fleet: SimulatedFleet | None = None
        self._own_fleet = False
        self.static_loaded = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._model_dir = config.model if os.path.isdir(config.model) else None
        base_config = self._read_base_config()
        self.max_model_len = config.max_model_len or int(base_config.get("max_position_embeddings") or 2048)
        archs = base_config.get("architectures") or []
        self._expected_modules = (
            LLAMA_LORA_MODULES if any(a in _LLAMA_ARCHS for a in archs) or not self._model_dir else None
        )
        self.tokenizer = Tokenizer.from_model_dir(config.model) if self._model_dir else Tokenizer()
        self._fingerprint = hashlib.sha256(
            json.dumps(
                [config.model, config.max_loras, config.cpu_loras, config.max_lora_rank, self.max_model_len]
            ).encode()
        ).hexdigest()[:8]
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ lifecycle
    def _read_base_config(self) -> dict[str, Any]:
        if not self._model_dir:
            return {}
        try:
            with open(os.path.join(self._model_dir, "config.json")) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @property
    def port(self) -> int:
        """The first port the pod listens on."""
        return self.addresses[0][1]

    @property
    def url(self) -> str:
        """Base URL of the first address."""
        host, port = self.addresses[0]
        return f"http://{host}:{port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Load `--lora-modules`, listen on host:port (0 = any free port); return the port."""
        if self._fleet is None:
            from lora_controller.simulator.fleet import SimulatedFleet

            fleet = SimulatedFleet()
            await fleet.start()
            self._own_fleet = True
            await fleet.attach(self, host=host, port=port)
            return self.port
        await self._fleet.attach(self, host=host, port=port)
        return self.port

    async def load_static_adapters(self) -> None:
        """Load `--lora-modules` as vLLM's `init_static_loras` does; any failure aborts the start."""
        for module in self.config.lora_modules:
            req = LoadLoRAAdapterRequest(lora_name=module.name, lora_path=module.path)
            base = module.base_model_name if module.base_model_name in self.config.names else None
            status, body = await self._load(req, static=True, base_model_name=base)
            if status != 200:
                raise SimulatorStartError(str(body["error"]["message"]) if isinstance(body, dict) else str(body))

    async def stop(self) -> None:
        """Stop listening and drop connections; a pod started alone also stops its server."""
        for task in list(self._tasks):
            task.cancel()
        if self._fleet is not None:
            await self._fleet.detach(self)
            if self._own_fleet:
                await self._fleet.stop()
                self._fleet = None
                self._own_fleet = False

    async def restart(self, *, downtime: float = 0.0) -> None:
        """A vLLM restart: connections dropped, runtime-loaded adapters forgotten, `--lora-modules` reloaded."""
        fleet = self._fleet
        addresses = list(self.addresses)
        if fleet is not None:
            await fleet.detach(self)
        self.adapters.clear()
        self.static_loaded = False
        self._inflight.clear()
        self._lora_series.clear()
        self._name_locks.clear()
        self._id_counter = 0
        self.restarts += 1
        if downtime > 0:
            await asyncio.sleep(downtime)
        self.started_at = time.time()
        if fleet is not None:
            for host, port in addresses:
                await fleet.attach(self, host=host, port=port)
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

    # ------------------------------------------------------------------ routing
    def _build_routes(self) -> dict[str, dict[str, Handler]]:
        routes: dict[str, dict[str, Handler]] = {
            "/health": {"GET": self._health},
            "/ping": {"GET": self._health, "POST": self._health},
            "/version": {"GET": self._version},
            "/metrics": {"GET": self._metrics},
            "/v1/models": {"GET": self._models},
            "/v1/completions": {"POST": self._completions},
        }
        if self.config.runtime_lora_updating:
            routes["/v1/load_lora_adapter"] = {"POST": self._load_route}
            routes["/v1/unload_lora_adapter"] = {"POST": self._unload_route}
            routes["/adapters"] = {"POST": self._sagemaker_register}
        return routes

    def _match(self, path: str) -> tuple[dict[str, Handler] | None, dict[str, str]]:
        methods = self._routes.get(path)
        if methods is not None:
            return methods, {}
        if self.config.runtime_lora_updating and path.startswith("/adapters/"):
            name = path[len("/adapters/") :]
            if name and "/" not in name:
                return {"DELETE": self._sagemaker_unregister}, {"adapter_name": name}
        return None, {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request as the vLLM server would."""
        self.track(request.transport)
        path = request.path
        if path.startswith("/_sim/") and self.config.control_endpoint:
            from lora_controller.simulator.control import handle_control

            return await handle_control(self, request)
        if (
            self.config.api_key
            and path.startswith("/v1")
            and request.method != "OPTIONS"
            and request.headers.get("Authorization", "") != f"Bearer {self.config.api_key}"
        ):
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

    def _card(self, *, model_id: str, root: str, parent: str | None, max_model_len: int | None) -> dict[str, Any]:
        now = int(time.time())
        return {
            "id": model_id,
            "object": "model",
            "created": now,
            "owned_by": "vllm",
            "root": root,
            "parent": parent,
            "max_model_len": max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{secrets.token_hex(8)}",
                    "object": "model_permission",
                    "created": now,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }

    def model_list(self) -> dict[str, Any]:
        """The `/v1/models` body."""
        cards = [
            self._card(model_id=name, root=self.config.model, parent=None, max_model_len=self.max_model_len)
            for name in self.config.names
        ]
        parent = self.config.names[0]
        cards.extend(
            self._card(model_id=a.name, root=a.path, parent=a.base_model_name or parent, max_model_len=None)
            for a in self.adapters.values()
        )
        return {"object": "list", "data": cards}

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.model_list())

    def metrics_text(self) -> str:
        """The `/metrics` text: vLLM's LoRA info gauge and a few request gauges."""
        running = sum(1 for r in self._inflight)
        model = self.config.names[0]
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f'vllm:num_requests_running{{engine="0",model_name="{model}"}} {float(running)}',
        ]
        if self.config.enable_lora:
            lines += [
                "# HELP vllm:lora_requests_info Running stats on lora requests.",
                "# TYPE vllm:lora_requests_info gauge",
            ]
            for (running_names, waiting_names), stamp in self._lora_series.items():
                lines.append(
                    f'vllm:lora_requests_info{{max_lora="{self.config.max_loras}",'
                    f'running_lora_adapters="{running_names}",waiting_lora_adapters="{waiting_names}"}} '
                    f"{go_float(stamp)}"
                )
        return "\n".join(lines) + "\n"

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.metrics_text().encode(),
            headers={"Content-Type": "text/plain; version=1.0.0; charset=utf-8"},
        )

    # ------------------------------------------------------------------ LoRA management
    async def _load_route(self, request: web.Request) -> web.StreamResponse:
        body = await read_json_body(request, LOAD_ADAPTER)
        status, payload = await self._load(body)
        return bare(200, payload) if isinstance(payload, str) else json_response(payload, status=status)

    async def _unload_route(self, request: web.Request) -> web.StreamResponse:
        body = await read_json_body(request, UNLOAD_ADAPTER)
        status, payload = await self._unload(body)
        return bare(200, payload) if isinstance(payload, str) else json_response(payload, status=status)

    async def _sagemaker_register(self, request: web.Request) -> web.StreamResponse:
        data: Any
        try:  # Starlette's request.json(): no content-type check; no JSON body -> query parameters
            data = json.loads(await request.read())
        except json.JSONDecodeError:
            data = dict(request.query)
        except ValueError:  # undecodable bytes: uncaught in vLLM, Starlette's plain 500
            return web.Response(status=500, text="Internal Server Error")
        try:
            sm = SageMakerRegisterLoRAAdapterRequest.model_validate(data)
        except Exception as exc:
            detail = exc.json(include_url=False) if hasattr(exc, "json") else str(exc)
            return json_response(http_exception_body(400, detail), status=400)
        req = LoadLoRAAdapterRequest(
            lora_name=sm.name, lora_path=sm.src, load_inplace=sm.load_inplace, is_3d_lora_weight=sm.is_3d_lora_weight
        )
        status, payload = await self._load(req)
        if isinstance(payload, str):
            alias = request.headers.get(SAGEMAKER_ALIAS_HEADER)
            return bare(200, f"Adapter {alias or sm.name} registered")
        return json_response(payload, status=status)

    async def _sagemaker_unregister(self, request: web.Request) -> web.StreamResponse:
        name = request[PATH_PARAMS]["adapter_name"]
        status, payload = await self._unload(UnloadLoRAAdapterRequest(lora_name=name))
        if isinstance(payload, str):
            alias = request.headers.get(SAGEMAKER_ALIAS_HEADER)
            return bare(200, f"Adapter {alias or name} unregistered")
        return json_response(payload, status=status)

    async def _load(
        self, req: LoadLoRAAdapterRequest, *, static: bool = False, base_model_name: str | None = None
    ) -> tuple[int, str | dict[str, Any]]:
        """`OpenAIServingModels.load_lora_adapter`: checks, then the engine, then the registry."""
        name = req.lora_name
        async with self._name_locks[name]:
            if not name or not req.lora_path:
                return 400, vllm_error(
                    "Both 'lora_name' and 'lora_path' must be provided.", err_type="InvalidUserInput", code=400
                )
            if name in self.config.names:
                return 400, vllm_error(
                    f"The lora adapter '{name}' conflicts with a served base model.",
                    err_type="InvalidUserInput",
                    code=400,
                )
            if not req.load_inplace and name in self.adapters:
                return 400, vllm_error(
                    f"The lora adapter '{name}' has already been loaded. If you want to load the adapter in place, "
                    "set 'load_inplace' to True.",
                    err_type="InvalidUserInput",
                    code=400,
                )
            started = time.time()
            self._loads_in_flight += 1
            self.max_concurrent_loads = max(self.max_concurrent_loads, self._loads_in_flight)
            try:
                status, result = await self._engine_add_lora(req)
            finally:
                self._loads_in_flight -= 1
            self.load_log.append(
                LoadEvent(started, time.time(), "load", name, req.lora_path, status, inplace=req.load_inplace)
            )
            if not isinstance(result, AdapterFiles):
                return status, result
            existing = self.adapters.get(name)
            if existing is None:
                self._id_counter += 1
            self.adapters[name] = RegisteredAdapter(
                name=name,
                path=req.lora_path,
                int_id=existing.int_id if existing else self._id_counter,
                files=result,
                loaded_at=time.time(),
                static=static,
                base_model_name=base_model_name,
            )
            return 200, f"Success: LoRA adapter '{name}' added successfully."

    async def _engine_add_lora(self, req: LoadLoRAAdapterRequest) -> tuple[int, AdapterFiles | dict[str, Any]]:
        if self.faults.load_latency_ms > 0:
            await asyncio.sleep(self.faults.load_latency_ms / 1000)
        failure: str | None = None
        if not self.config.enable_lora:
            failure = "LoRA is not enabled. Use --enable-lora to enable LoRA."
        elif self.faults.refuse_loads:
            failure = "simulated engine refusal: no capacity to load LoRA adapters"
        else:
            try:
                return 200, await asyncio.to_thread(
                    read_adapter,
                    req.lora_name,
                    req.lora_path,
                    max_lora_rank=self.config.max_lora_rank,
                    expected_modules=self._expected_modules,
                )
            except AdapterNotFound as exc:
                return 404, vllm_error(str(exc), err_type="NotFoundError", code=404)
            except AdapterLoadError as exc:
                failure = str(exc)
        message = (
            f"Call to add_lora method failed: Worker failed with error '{failure}', "
            "please check the stack trace above for the root cause"
        )
        return 500, vllm_error(message, err_type="InternalServerError", code=500)

    async def _unload(self, req: UnloadLoRAAdapterRequest) -> tuple[int, str | dict[str, Any]]:
        """`OpenAIServingModels.unload_lora_adapter`."""
        name = req.lora_name
        async with self._name_locks[name]:
            if not name:
                return 400, vllm_error(
                    "'lora_name' needs to be provided to unload a LoRA adapter.", err_type="InvalidUserInput", code=400
                )
            if name not in self.adapters:
                return 404, vllm_error(f"The lora adapter '{name}' cannot be found.", err_type="NotFoundError", code=404)
            started = time.time()
            if self.faults.unload_latency_ms > 0:
                await asyncio.sleep(self.faults.unload_latency_ms / 1000)
            del self.adapters[name]
            self.load_log.append(LoadEvent(started, time.time(), "unload", name, None, 200))
            return 200, f"Success: LoRA adapter '{name}' removed successfully."

    # ------------------------------------------------------------------ completions
    def _record_lora_info(self) -> None:
        names: list[str] = []
        for item in self._inflight:
            if item.adapter is not None and item.adapter not in names:
                names.append(item.adapter)
        joined = ",".join(names)
        key = (joined, joined)  # 0.32 builds both labels from the same set
        self._lora_series.pop(key, None)
        self._lora_series[key] = time.time()

    def _active_adapters(self) -> set[str]:
        return {i.adapter for i in self._inflight if i.adapter is not None and i.active}

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        req = await read_json_body(request, COMPLETION)
        model = req.model
        adapter: str | None = None
        if model and model not in self.config.names:
            if model not in self.adapters:
                aliases = ", ".join(self.config.names)
                return json_response(
                    vllm_error(
                        f"The model `{model}` does not exist. Valid aliases: {aliases}.",
                        err_type="NotFoundError",
                        code=404,
                        param="model",
                    ),
                    status=404,
                )
            adapter = model
        prompts = self._prompts(req)
        if isinstance(prompts, web.StreamResponse):
            return prompts
        lengths = [len(p) if isinstance(p, list) else self.tokenizer.count(p) for p in prompts]
        longest = max(lengths)
        if longest > self.max_model_len:
            return self._bad_request(
                f"Input length ({longest}) exceeds model's maximum context length ({self.max_model_len}).", None
            )
        max_tokens = req.max_tokens if req.max_tokens is not None else self.max_model_len - longest
        if max_tokens < 1:
            return self._bad_request(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens")
        if max_tokens + longest > self.max_model_len:
            return self._bad_request(
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum context "
                f"length is {self.max_model_len} tokens and your request has {longest} input tokens "
                f"({max_tokens} > {self.max_model_len} - {longest}).",
                "max_tokens",
            )
        texts = await self._generate(adapter, prompts, max_tokens=max_tokens, n=max(1, req.n))
        choices = [
            {
                "index": i,
                "text": text,
                "logprobs": None,
                "finish_reason": "length",
                "stop_reason": None,
                "token_ids": None,
                "prompt_logprobs": None,
                "prompt_token_ids": None,
                "routed_experts": None,
            }
            for i, text in enumerate(texts)
        ]
        prompt_tokens = sum(lengths)
        completion_tokens = max_tokens * len(texts)
        body = {
            "id": f"cmpl-{secrets.token_hex(8)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model or self.config.names[0],
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": f"vllm-{VLLM_VERSION}-{self._fingerprint}",
            "usage": {
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens": completion_tokens,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }
        if req.stream:
            return await self._stream(request, body)
        return json_response(body)

    def _bad_request(self, message: str, param: str | None) -> web.Response:
        return json_response(vllm_error(message, err_type="BadRequestError", code=400, param=param), status=400)

    def _prompts(self, req: CompletionRequest) -> list[str | list[int]] | web.Response:
        prompt = req.prompt
        if prompt is None or prompt == "" or prompt == []:
            return self._bad_request("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [[int(p) for p in prompt if isinstance(p, int)]]
        out: list[str | list[int]] = []
        for p in prompt:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, list):
                out.append(list(p))
        return out

    async def _generate(
        self, adapter: str | None, prompts: list[str | list[int]], *, max_tokens: int, n: int
    ) -> list[str]:
        item = _InFlight(adapter)
        self._inflight.append(item)
        self._record_lora_info()
        try:
            if adapter is not None:
                async with self._slot_change:
                    await self._slot_change.wait_for(
                        lambda: adapter in self._active_adapters() or len(self._active_adapters()) < self.config.max_loras
                    )
                    item.active = True
            if self.faults.token_latency_ms > 0:
                await asyncio.sleep(self.faults.token_latency_ms * max_tokens / 1000)
            files = self.adapters.get(adapter) if adapter else None
            seed_base = f"{self.config.model}|{files.path if files else ''}|{adapter or ''}"
            return [
                self.tokenizer.generate(seed_text=f"{seed_base}|{p}|{i}", count=max_tokens)
                for p in prompts
                for i in range(n)
            ]
        finally:
            if item in self._inflight:
                self._inflight.remove(item)
            self._record_lora_info()
            async with self._slot_change:
                self._slot_change.notify_all()

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        for choice in body["choices"]:
            chunk = {
                "id": body["id"],
                "object": "text_completion",
                "created": body["created"],
                "model": body["model"],
                "choices": [{"index": choice["index"], "text": choice["text"], "logprobs": None,
                             "finish_reason": "length", "stop_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

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
        self.load_log.clear()
        self.request_counts.clear()
        self.max_concurrent_loads = self._loads_in_flight

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run `coro` in the background, kept alive until done."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def sanitized(message: str) -> str:
    """vLLM's sanitiser, re-exported for tests of messages."""
    return sanitize_message(message)
