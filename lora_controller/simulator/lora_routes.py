"""The runtime LoRA routes of a simulated vLLM server (present with VLLM_ALLOW_RUNTIME_LORA_UPDATING).

vLLM's own `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter` (plain-text success, JSON
errors), and the SageMaker-style `POST /adapters` and `DELETE /adapters/{adapter_name}` that 0.32
serves beside them, with Starlette's body handling (no content-type check, query parameters when
the body is not JSON).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lora_controller.simulator.errors import http_exception_body
from lora_controller.simulator.protocol import (
    LOAD_ADAPTER,
    UNLOAD_ADAPTER,
    LoadLoRAAdapterRequest,
    SageMakerRegisterLoRAAdapterRequest,
    UnloadLoRAAdapterRequest,
)
from lora_controller.simulator.registry import LoraRegistry, Outcome
from lora_controller.simulator.responses import bare, json_response, read_json_body

SAGEMAKER_ALIAS_HEADER = "X-Amzn-SageMaker-Adapter-Alias"
PATH_PARAMS = web.RequestKey("path_params", dict)


def _answer(outcome: Outcome) -> web.Response:
    status, payload = outcome
    return bare(200, payload) if isinstance(payload, str) else json_response(payload, status=status)


class LoraRoutes:
    """HTTP handlers over one server's `LoraRegistry`."""

    def __init__(self, registry: LoraRegistry) -> None:
        self.registry = registry

    async def load(self, request: web.Request) -> web.StreamResponse:
        return _answer(await self.registry.load(await read_json_body(request, LOAD_ADAPTER)))

    async def unload(self, request: web.Request) -> web.StreamResponse:
        return _answer(await self.registry.unload(await read_json_body(request, UNLOAD_ADAPTER)))

    async def sagemaker_register(self, request: web.Request) -> web.StreamResponse:
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
        status, payload = await self.registry.load(req)
        if isinstance(payload, str):
            alias = request.headers.get(SAGEMAKER_ALIAS_HEADER)
            return bare(200, f"Adapter {alias or sm.name} registered")
        return json_response(payload, status=status)

    async def sagemaker_unregister(self, request: web.Request) -> web.StreamResponse:
        name = request[PATH_PARAMS]["adapter_name"]
        status, payload = await self.registry.unload(UnloadLoRAAdapterRequest(lora_name=name))
        if isinstance(payload, str):
            alias = request.headers.get(SAGEMAKER_ALIAS_HEADER)
            return bare(200, f"Adapter {alias or name} unregistered")
        return json_response(payload, status=status)
