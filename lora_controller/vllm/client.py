"""The async client of a vLLM pod's runtime LoRA API, as the reconciler uses it.

One `aiohttp.ClientSession` serves the whole controller (its connector bounds connections); every call
has a timeout; loads into one pod are bounded by a per-pod semaphore so a burst of placements cannot
stampede a pod's engine. Answers are mapped to typed outcomes by `errors.classify`; transport
failures (timeouts, refused connections, resets) become `TransientError`.

A pod is not trusted to answer sanely: every answer is read through a cap (4 MiB for
`/v1/models`, 8 MiB for `/metrics`, 64 KiB for anything else; an announced `Content-Length` above
it is refused before the body is read, a body that goes past it is cut and the connection
dropped), and `/v1/models` may list at most `MAX_MODEL_ENTRIES` models. A pod that breaks these
bounds, or answers with a body of the wrong shape, raises `PodResponseInvalid` saying what it did. The API key, when a pod
needs one, goes in `Authorization: Bearer` and nowhere else: never in logs, never in exceptions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog
from prometheus_client import Counter, Histogram

from lora_controller.vllm.endpoint import Endpoint
from lora_controller.vllm.errors import (
    Operation,
    PodResponseInvalid,
    TransientError,
    VllmError,
    classify,
    parse_error_body,
)
from lora_controller.vllm.models import (
    MAX_MODEL_ENTRIES,
    LoadOutcome,
    LoadResult,
    LoraRequestsInfo,
    ModelEntry,
    ModelList,
    ResponseFormatError,
    UnloadOutcome,
    UnloadResult,
    model_cards,
    parse_card,
    parse_lora_requests_info,
    split_entries,
)

log = structlog.get_logger(__name__)

REQUESTS = Counter(
    "lora_controller_vllm_requests",
    "Calls to vLLM pods by operation and outcome.",
    ["operation", "outcome"],
)
LATENCY = Histogram(
    "lora_controller_vllm_request_duration_seconds",
    "Duration of calls to vLLM pods.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

# The most a pod's answer may hold, by operation (bytes); anything else: DEFAULT_MAX_ANSWER.
MAX_ANSWER_BYTES = {Operation.LIST_MODELS: 4 << 20, Operation.METRICS: 8 << 20}
DEFAULT_MAX_ANSWER = 64 << 10
_PATHS = {Operation.LIST_MODELS: "GET /v1/models", Operation.LOAD: "POST /v1/load_lora_adapter",
          Operation.UNLOAD: "POST /v1/unload_lora_adapter", Operation.HEALTH: "GET /health",
          Operation.METRICS: "GET /metrics"}


def create_session(*, limit: int = 256, limit_per_host: int = 8, keepalive_timeout: float = 10.0) -> aiohttp.ClientSession:
    """The controller's one session for all pods: bounded connections, no cookies, no env proxies.

    vLLM's answers are small (a model list, a line of text), so each connection reads through a
    16 KiB buffer instead of aiohttp's 64 KiB: with hundreds of pods that is the difference between
    a few and a dozen MiB; longer answers still stream, in more reads. Idle connections close after
    `keepalive_timeout` (a burst of loads reuses them; the next poll of a pod rarely would)."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host, keepalive_timeout=keepalive_timeout)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        raise_for_status=False,
        read_bufsize=16 * 1024,
    )


async def _parse_models(text: str, *, batch: int = 500) -> ModelList:
    """`/v1/models` parsed in batches of cards with a yield to the event loop between them, so a
    long list never holds the loop (a 4 MiB answer decodes in one call of tens of ms)."""
    cards = model_cards(json.loads(text))
    entries: list[ModelEntry] = []
    for start in range(0, len(cards), batch):
        entries.extend(parse_card(card) for card in cards[start:start + batch])
        await asyncio.sleep(0)
    return split_entries(entries)


class VllmClient:
    """Calls vLLM pods' `/v1/models`, `/v1/load_lora_adapter`, `/v1/unload_lora_adapter`, `/health`, `/metrics`."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        timeout: float = 10.0,
        load_timeout: float | None = None,
        load_concurrency_per_pod: int = 2,
        api_key: str | None = None,
    ) -> None:
        if load_concurrency_per_pod < 1:
            raise ValueError("load_concurrency_per_pod must be >= 1")
        self._session = session
        self._timeout = timeout
        self._load_timeout = load_timeout if load_timeout is not None else max(timeout, 60.0)
        self._load_concurrency = load_concurrency_per_pod
        self._api_key = api_key
        self._load_slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}

    def _slots(self, endpoint: Endpoint) -> asyncio.Semaphore:
        key = (endpoint.scheme, endpoint.host, endpoint.port)
        sem = self._load_slots.get(key)
        if sem is None:
            sem = asyncio.Semaphore(self._load_concurrency)
            self._load_slots[key] = sem
        return sem

    def forget(self, endpoint: Endpoint) -> None:
        """Drop per-pod state (the load semaphore) of a pod that is gone."""
        self._load_slots.pop((endpoint.scheme, endpoint.host, endpoint.port), None)

    def _headers(self, endpoint: Endpoint, api_key: str | None, *, json_body: bool) -> dict[str, str]:
        headers: dict[str, str] = {"Accept": "application/json"}
        if json_body:
            headers["Content-Type"] = "application/json"
        key = api_key if api_key is not None else (endpoint.api_key if endpoint.api_key is not None else self._api_key)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _request(
        self,
        operation: Operation,
        endpoint: Endpoint,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        api_key: str | None = None,
        call_timeout: float | None = None,
    ) -> tuple[int, str]:
        """Send one request; return (status, body text). Transport failures raise TransientError."""
        started = time.monotonic()
        data = json.dumps(body).encode() if body is not None else None
        try:
            async with self._session.request(
                method,
                endpoint.url(path),
                data=data,
                headers=self._headers(endpoint, api_key, json_body=body is not None),
                timeout=aiohttp.ClientTimeout(total=call_timeout if call_timeout is not None else self._timeout),
                allow_redirects=False,
            ) as resp:
                return resp.status, await self._read_capped(operation, endpoint, resp)
        except TimeoutError as exc:
            REQUESTS.labels(operation.value, "timeout").inc()
            raise TransientError(
                f"vLLM {operation.value} on {endpoint}: no answer within {call_timeout or self._timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            REQUESTS.labels(operation.value, "connection_error").inc()
            raise TransientError(f"vLLM {operation.value} on {endpoint}: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            REQUESTS.labels(operation.value, "connection_error").inc()
            raise TransientError(f"vLLM {operation.value} on {endpoint}: {type(exc).__name__}: {exc}") from exc
        finally:
            LATENCY.labels(operation.value).observe(time.monotonic() - started)

    async def _read_capped(
        self, operation: Operation, endpoint: Endpoint, resp: aiohttp.ClientResponse
    ) -> str:
        """The answer's text, read through the operation's cap (see module doc)."""
        limit = MAX_ANSWER_BYTES.get(operation, DEFAULT_MAX_ANSWER)
        length = resp.content_length
        if length is not None and length > limit:
            raise self._too_large(operation, endpoint, limit, f"announces {length} bytes")
        data = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > limit:
                resp.close()  # drop the connection: the rest is never read
                raise self._too_large(operation, endpoint, limit, "kept sending")
        return data.decode("utf-8", errors="replace")

    def _too_large(self, operation: Operation, endpoint: Endpoint, limit: int, what: str) -> VllmError:
        REQUESTS.labels(operation.value, "too_large").inc()
        return self._fail(operation, endpoint, PodResponseInvalid(
            f"the pod's answer to {_PATHS[operation]} is larger than {limit} bytes (it {what}); "
            f"a vLLM pod never sends that much"))

    def _fail(self, operation: Operation, endpoint: Endpoint, error: VllmError) -> VllmError:
        REQUESTS.labels(operation.value, type(error).__name__).inc()
        log.info(
            "vllm_call_failed",
            operation=operation.value,
            endpoint=str(endpoint),
            error=type(error).__name__,
            status=error.status,
            reason=error.reason,
        )
        return error

    async def list_models(
        self, endpoint: Endpoint, *, api_key: str | None = None, call_timeout: float | None = None
    ) -> ModelList:
        """`GET /v1/models`: the pod's base models and registered adapters (with `root` and `parent`)."""
        op = Operation.LIST_MODELS
        status, text = await self._request(op, endpoint, "GET", "/v1/models", api_key=api_key, call_timeout=call_timeout)
        error = classify(operation=op, status=status, body=text)
        if error is not None:
            raise self._fail(op, endpoint, error)
        try:
            if text.count('"id"') > MAX_MODEL_ENTRIES:  # cheap: refuse before parsing it all
                raise ResponseFormatError(f"it lists more than {MAX_MODEL_ENTRIES} models")
            models = await _parse_models(text)
        except (ValueError, RecursionError, ResponseFormatError) as exc:
            detail = str(exc) if isinstance(exc, ResponseFormatError) else f"not JSON ({type(exc).__name__})"
            raise self._fail(op, endpoint, PodResponseInvalid(
                f"the pod's answer to GET /v1/models is not what vLLM sends: {detail[:200]}")) from None
        REQUESTS.labels(op.value, "ok").inc()
        return models

    async def load_adapter(
        self,
        endpoint: Endpoint,
        *,
        name: str,
        path: str,
        inplace: bool = False,
        api_key: str | None = None,
        call_timeout: float | None = None,
    ) -> LoadResult:
        """`POST /v1/load_lora_adapter`. "Already loaded" is a success (`ALREADY_LOADED`).

        Raises `AdapterInvalid` (with a reason a person can act on), `NameConflict`,
        `RuntimeUpdatesDisabled`, `Unauthorized`, `RequestRejected` or `TransientError`.
        """
        op = Operation.LOAD
        body: dict[str, Any] = {"lora_name": name, "lora_path": path}
        if inplace:
            body["load_inplace"] = True
        async with self._slots(endpoint):
            status, text = await self._request(
                op,
                endpoint,
                "POST",
                "/v1/load_lora_adapter",
                body=body,
                api_key=api_key,
                call_timeout=call_timeout if call_timeout is not None else self._load_timeout,
            )
        error = classify(operation=op, status=status, body=text, name=name, path=path)
        if error is not None:
            raise self._fail(op, endpoint, error)
        if status >= 300:
            outcome = LoadOutcome.ALREADY_LOADED
            message = parse_error_body(text).message
        else:
            outcome = LoadOutcome.RELOADED if inplace else LoadOutcome.LOADED
            message = text
        REQUESTS.labels(op.value, outcome.value).inc()
        log.info("vllm_adapter_load", endpoint=str(endpoint), adapter=name, path=path, outcome=outcome.value)
        return LoadResult(name=name, path=path, outcome=outcome, message=message)

    async def unload_adapter(
        self, endpoint: Endpoint, *, name: str, api_key: str | None = None, call_timeout: float | None = None
    ) -> UnloadResult:
        """`POST /v1/unload_lora_adapter`. "Cannot be found" is a success (`NOT_LOADED`)."""
        op = Operation.UNLOAD
        status, text = await self._request(
            op, endpoint, "POST", "/v1/unload_lora_adapter", body={"lora_name": name}, api_key=api_key, call_timeout=call_timeout
        )
        error = classify(operation=op, status=status, body=text, name=name)
        if error is not None:
            raise self._fail(op, endpoint, error)
        if status >= 300:
            outcome, message = UnloadOutcome.NOT_LOADED, parse_error_body(text).message
        else:
            outcome, message = UnloadOutcome.UNLOADED, text
        REQUESTS.labels(op.value, outcome.value).inc()
        log.info("vllm_adapter_unload", endpoint=str(endpoint), adapter=name, outcome=outcome.value)
        return UnloadResult(name=name, outcome=outcome, message=message)

    async def health(self, endpoint: Endpoint, *, call_timeout: float | None = None) -> bool:
        """`GET /health`: True on 200; False on any other answer or no answer."""
        try:
            status, _ = await self._request(Operation.HEALTH, endpoint, "GET", "/health", call_timeout=call_timeout)
        except TransientError:
            return False
        return status == 200

    async def metrics_text(
        self, endpoint: Endpoint, *, api_key: str | None = None, call_timeout: float | None = None
    ) -> str:
        """The raw `/metrics` text of the pod."""
        op = Operation.METRICS
        status, text = await self._request(op, endpoint, "GET", "/metrics", api_key=api_key, call_timeout=call_timeout)
        error = classify(operation=op, status=status, body=text)
        if error is not None:
            raise self._fail(op, endpoint, error)
        return text

    async def lora_requests_info(
        self, endpoint: Endpoint, *, api_key: str | None = None, call_timeout: float | None = None
    ) -> LoraRequestsInfo | None:
        """The newest `vllm:lora_requests_info` series (adapters with requests in flight), or None.

        None means no series yet (no request has run since the pod started) or LoRA disabled.
        """
        series = parse_lora_requests_info(await self.metrics_text(endpoint, api_key=api_key, call_timeout=call_timeout))
        return series[-1] if series else None
