"""The OpenAI-compatible routes of a simulated vLLM server: `/v1/models` and `/v1/completions`.

`/v1/models` lists the served base model names, then the registered adapters in registration order
with their path as `root` and their base model as `parent`, as vLLM 0.32 does. `/v1/completions`
checks the request in vLLM's order (unknown model, empty prompt, context length, `max_tokens`) with
its messages, and answers as JSON or as a server-sent event stream.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web

from lora_controller.simulator.config import VLLM_VERSION, PodConfig
from lora_controller.simulator.engine import Engine
from lora_controller.simulator.errors import vllm_error
from lora_controller.simulator.protocol import COMPLETION, CompletionRequest
from lora_controller.simulator.registry import LoraRegistry
from lora_controller.simulator.responses import json_response, read_json_body


def model_card(*, model_id: str, root: str, parent: str | None, max_model_len: int | None) -> dict[str, Any]:
    """One entry of `/v1/models`, with vLLM's permission block."""
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


def _bad_request(message: str, param: str | None) -> web.Response:
    return json_response(vllm_error(message, err_type="BadRequestError", code=400, param=param), status=400)


def _prompts(req: CompletionRequest) -> list[str | list[int]] | web.Response:
    prompt = req.prompt
    if prompt is None or prompt == "" or prompt == []:
        return _bad_request("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
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


def _choice(index: int, text: str) -> dict[str, Any]:
    return {
        "index": index,
        "text": text,
        "logprobs": None,
        "finish_reason": "length",
        "stop_reason": None,
        "token_ids": None,
        "prompt_logprobs": None,
        "prompt_token_ids": None,
        "routed_experts": None,
    }


async def _stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
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


class OpenAIRoutes:
    """`/v1/models` and `/v1/completions` over one server's registry and engine."""

    def __init__(
        self, config: PodConfig, registry: LoraRegistry, engine: Engine, *, max_model_len: int, fingerprint: str
    ) -> None:
        self.config = config
        self.registry = registry
        self.engine = engine
        self.max_model_len = max_model_len
        self.fingerprint = fingerprint

    def model_list(self) -> dict[str, Any]:
        """The `/v1/models` body."""
        cards = [
            model_card(model_id=name, root=self.config.model, parent=None, max_model_len=self.max_model_len)
            for name in self.config.names
        ]
        parent = self.config.names[0]
        cards.extend(
            model_card(model_id=a.name, root=a.path, parent=a.base_model_name or parent, max_model_len=None)
            for a in self.registry.adapters.values()
        )
        return {"object": "list", "data": cards}

    async def models(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.model_list())

    def _unknown_model(self, model: str) -> web.Response:
        aliases = ", ".join(self.config.names)
        return json_response(
            vllm_error(f"The model `{model}` does not exist. Valid aliases: {aliases}.",
                       err_type="NotFoundError", code=404, param="model"),
            status=404,
        )

    def _max_tokens(self, req: CompletionRequest, longest: int) -> int | web.Response:
        """The tokens to generate, or vLLM's answer when the context cannot hold them."""
        limit = self.max_model_len
        if longest > limit:
            return _bad_request(f"Input length ({longest}) exceeds model's maximum context length ({limit}).", None)
        max_tokens = req.max_tokens if req.max_tokens is not None else limit - longest
        if max_tokens < 1:
            return _bad_request(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens")
        if max_tokens + longest > limit:
            return _bad_request(
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum context "
                f"length is {limit} tokens and your request has {longest} input tokens "
                f"({max_tokens} > {limit} - {longest}).",
                "max_tokens",
            )
        return max_tokens

    async def completions(self, request: web.Request) -> web.StreamResponse:
        req = await read_json_body(request, COMPLETION)
        model = req.model
        adapter: str | None = None
        if model and model not in self.config.names:
            if model not in self.registry.adapters:
                return self._unknown_model(model)
            adapter = model
        prompts = _prompts(req)
        if isinstance(prompts, web.StreamResponse):
            return prompts
        lengths = [len(p) if isinstance(p, list) else self.engine.tokenizer.count(p) for p in prompts]
        max_tokens = self._max_tokens(req, max(lengths))
        if isinstance(max_tokens, web.StreamResponse):
            return max_tokens
        texts = await self.engine.generate(adapter, prompts, max_tokens=max_tokens, n=max(1, req.n))
        body = self._body(model or self.config.names[0], texts, sum(lengths), max_tokens * len(texts))
        if req.stream:
            return await _stream(request, body)
        return json_response(body)

    def _body(self, model: str, texts: list[str], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {
            "id": f"cmpl-{secrets.token_hex(8)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [_choice(i, text) for i, text in enumerate(texts)],
            "service_tier": None,
            "system_fingerprint": f"vllm-{VLLM_VERSION}-{self.fingerprint}",
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
