"""Typed outcomes of vLLM's runtime LoRA API, and the pure mapping from an HTTP answer to them.

vLLM answers with a status and a message, in one of two error body shapes (nested
`{"error": {...}}` since 0.10.2, flat `{"object": "error", "message": ...}` before), or FastAPI's
`{"detail": ...}` when a route does not exist (runtime updating disabled). The same failure has had
different statuses across releases (a rank above `--max-lora-rank` is a 400 in 0.10-0.11 and a 500
wrapped in "Call to add_lora method failed" in 0.32), so the mapping reads the message, not only the
status. Keeping it pure lets the recorded exchanges of a real server drive its tests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class VllmError(Exception):
    """A call to a vLLM pod did not do what was asked. `reason` is meant for a person (status, events)."""

    retryable: bool = False

    def __init__(self, reason: str, *, status: int | None = None, message: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message


class TransientError(VllmError):
    """Worth retrying later: 5xx other than a bad adapter, timeouts, refused connections, resets."""

    retryable = True


class PodResponseInvalid(TransientError):
    """The pod answered with what no vLLM sends: a body too large, too many models, a wrong shape.

    Its `reason` says what the pod did; the controller records it as the pod's error and treats
    the pod as degraded (retried later with backoff, like any transient failure)."""


class RuntimeUpdatesDisabled(VllmError):
    """The pod answers 404 `{"detail":"Not Found"}`: VLLM_ALLOW_RUNTIME_LORA_UPDATING is not set."""


class Unauthorized(VllmError):
    """The pod wants an API key (`--api-key`) that was not given or is wrong (401)."""


class RequestRejected(VllmError):
    """vLLM rejected the request itself (validation, empty name): a bug on our side, not the adapter's."""


class AdapterInvalid(VllmError):
    """The adapter cannot be loaded on this pod as it is: retrying will not help until it changes."""


class NameConflict(AdapterInvalid):
    """The adapter name equals a base model name served by the pod."""


class Operation(StrEnum):
    """The API call whose answer is being mapped."""

    LOAD = "load"
    UNLOAD = "unload"
    LIST_MODELS = "list_models"
    HEALTH = "health"
    METRICS = "metrics"


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The parts of an error answer, whatever its shape."""

    message: str
    type: str | None = None
    code: int | None = None
    shape: str = "text"  # "nested" | "flat" | "detail" | "text"


def parse_error_body(text: str) -> ErrorBody:
    """Read vLLM's nested or flat error body, FastAPI's `detail`, or plain text."""
    try:
        data: Any = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return ErrorBody(message=text.strip()[:2000])
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict):
            return ErrorBody(
                message=str(inner.get("message", "")),
                type=_str_or_none(inner.get("type")),
                code=_int_or_none(inner.get("code")),
                shape="nested",
            )
        if "message" in data and (data.get("object") == "error" or "type" in data):
            return ErrorBody(
                message=str(data.get("message", "")),
                type=_str_or_none(data.get("type")),
                code=_int_or_none(data.get("code")),
                shape="flat",
            )
        if "detail" in data:
            detail = data["detail"]
            return ErrorBody(message=detail if isinstance(detail, str) else json.dumps(detail), shape="detail")
        if isinstance(inner, str):  # {"error": "Unauthorized"} from vLLM's API-key middleware
            return ErrorBody(message=inner, shape="flat")
    return ErrorBody(message=text.strip())


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_ALREADY_LOADED = re.compile(r"has already been\s*loaded", re.IGNORECASE)
_UNLOAD_NOT_FOUND = re.compile(r"cannot be found", re.IGNORECASE)
_CONFLICT = re.compile(r"conflicts with a served base model", re.IGNORECASE)
_NOT_FOUND_ADAPTER = re.compile(r"No adapter found for", re.IGNORECASE)
_RANK = re.compile(r"LoRA rank (\d+) is greater than max_lora_rank (\d+)")
_EMPTY_FIELDS = re.compile(r"must be provided|needs to be provided", re.IGNORECASE)
_TARGETS = re.compile(r"expected\s+target modules in \{(?P<expected>[^}]*)\} but received \[(?P<received>[^\]]*)\]")
_QUOTED = re.compile(r"'([^']+)'")
_WORKER_INNER = re.compile(r"Worker failed with error '(?P<inner>.*)', please check the stack trace", re.DOTALL)

# Messages of the adapter checks of vLLM (peft_helper, lora_model, json, safetensors, os errors on
# the adapter's own files) and what a person should be told.
_INVALID_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"doesn't contain tensors"), "the adapter has no weights file (adapter_model.safetensors/.bin/.pt)"),
    (re.compile(r"Missing required configuration fields: (.*)"), "adapter_config.json lacks required fields {0}"),
    (re.compile(r"(Expecting|Unterminated string|Extra data|Invalid control character|Invalid \\escape)"
                r"[^:]*: line \d+ column \d+"), "adapter_config.json is not valid JSON"),
    (re.compile(r"modules_to_save"), "the adapter uses modules_to_save, which vLLM does not support"),
    (re.compile(r"DoRA"), "the adapter uses DoRA, which vLLM does not support"),
    (re.compile(r"[Bb]ias"), "the adapter trains biases, which vLLM does not support"),
    (re.compile(r"does not support (init_lora_weights=\S+|Activated LoRA|layer_replication|block-diagonal|QALoRA)"),
     "the adapter uses a PEFT feature vLLM does not support ({0})"),
    (re.compile(r"expected\s+target modules"), "the adapter targets modules the base model does not have"),
    (re.compile(r"is unsupported LoRA weight"), "the adapter's weights file has tensors vLLM cannot map"),
    (re.compile(r"(Error while deserializing header|SafetensorError|HeaderTooLarge|InvalidHeader)"),
     "the adapter's weights file is not a valid safetensors file"),
    (re.compile(r"LoRA rank `r` must be a positive integer"), "the adapter's rank r is not a positive integer"),
    (re.compile(r"Not a directory|Is a directory"), "the adapter path is not a directory holding adapter_config.json"),
    (re.compile(r"embedding LoRA size"), "the adapter's embedding size differs from the base model's vocabulary"),
    (re.compile(r"not supported between instances|unsupported operand type|object does not support item assignment"
                r"|list indices must be integers"), "adapter_config.json has fields of the wrong type"),
)


def adapter_invalid_reason(message: str, *, path: str | None = None) -> str | None:
    """A person-readable reason when `message` says the adapter itself is unusable, else None."""
    rank = _RANK.search(message)
    if rank:
        return f"rank {rank.group(1)} exceeds the pod's max_lora_rank {rank.group(2)}"
    if _NOT_FOUND_ADAPTER.search(message):
        return f"no adapter found at {path}" if path else "no adapter found at the given path"
    targets = _TARGETS.search(message)
    if targets:  # name the modules: it tells which base model the adapter was trained for
        received = sorted({m.rsplit(".", 1)[-1] for m in _QUOTED.findall(targets["received"])})
        expected = sorted(set(_QUOTED.findall(targets["expected"])))
        return (f"the adapter targets modules the base model does not have ({', '.join(received)}; "
                f"it has {', '.join(expected)})")
    for pattern, reason in _INVALID_PATTERNS:
        found = pattern.search(message)
        if found:
            return reason.format(*(found.groups() or ("",)))
    return None


def classify(
    *,
    operation: Operation,
    status: int,
    body: str,
    name: str | None = None,
    path: str | None = None,
) -> VllmError | None:
    """Map a non-success answer to a typed error; None means the answer is a success for us.

    "Already loaded" on load and "cannot be found" on unload count as success (None): the caller
    asked for a state the pod is already in. A 2xx is always None.
    """
    if 200 <= status < 300:
        return None
    err = parse_error_body(body)
    msg = err.message
    label = f"vLLM {operation.value}" + (f" of {name!r}" if name else "")
    if status == 401:
        return Unauthorized(f"{label}: the pod requires a valid API key (401)", status=status, message=msg)
    if err.shape == "detail" and status in (404, 405) and operation in (Operation.LOAD, Operation.UNLOAD):
        return RuntimeUpdatesDisabled(
            f"{label}: runtime LoRA updates are disabled on the pod "
            "(set VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)",
            status=status,
            message=msg,
        )
    if operation is Operation.LOAD:
        if _ALREADY_LOADED.search(msg) and status in (400, 409):
            return None
        if _CONFLICT.search(msg):
            return NameConflict(
                f"adapter name {name!r} is the name of a base model served by the pod", status=status, message=msg
            )
        if _EMPTY_FIELDS.search(msg) and status == 400:
            return RequestRejected(f"{label}: vLLM rejected the request: {msg}", status=status, message=msg)
        inner = _WORKER_INNER.search(msg)
        reason = adapter_invalid_reason(inner.group("inner") if inner else msg, path=path)
        if reason is not None and (status in (400, 404, 422) or status >= 500):
            return AdapterInvalid(reason, status=status, message=msg)
    if operation is Operation.UNLOAD and status in (400, 404) and _UNLOAD_NOT_FOUND.search(msg):
        return None
    if status >= 500 or status in (408, 429):
        return TransientError(f"{label}: HTTP {status}: {msg}"[:500], status=status, message=msg)
    if status == 404 and err.shape == "detail":
        return VllmError(f"{label}: route not found on the pod (404)", status=status, message=msg)
    return RequestRejected(f"{label}: HTTP {status}: {msg}"[:500], status=status, message=msg)
