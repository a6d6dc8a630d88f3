"""vLLM's error bodies, byte for byte: its message sanitiser, its validation-error rendering, its shapes.

vLLM 0.32 passes every error message through `sanitize_message` (absolute paths become `<path>`)
and renders FastAPI request-validation errors as `"N validation error(s):\n  {...}"` with the
pydantic `loc` joined by dots (wrapper markers dropped) and container inputs summarised. A client
that maps messages, and a conformance test that compares bodies, both need exactly these texts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

_ADDR = re.compile(r" at 0x[0-9a-fA-F]+>")
_FRAME = re.compile(r'\n?\s*File "[^"]+", line \d+, in \S+(\n\s+.*)?')
_SYS_PATH = re.compile(r"/(?:home|usr|opt|var|tmp|root|lib|mnt|srv)(?:/[\w.\-]+)+")
_FILE_PATH = re.compile(r"(?:/[\w\-]+)+/[\w\-]+\.\w+")

# pydantic-core's schema-kind markers that vLLM drops from `loc` (clean_loc_for_param).
_BRACKETED = re.compile(r"[\[\]{}()]")
_INTERNAL_LOC = frozenset(
    {
        "function-wrap", "function-after", "function-before", "function-plain", "json-or-python",
        "lax-or-strict", "chain", "default", "nullable", "tagged-union", "union", "call", "arguments",
        "is-instance", "is-subclass", "callable", "str", "int", "float", "bool", "bytes", "bytearray",
        "list", "tuple", "dict", "set", "frozenset", "complex", "none", "nonetype",
    }
)


def sanitize_message(message: str) -> str:
    """vLLM's `sanitize_message`: drop object addresses and stack frames, hide absolute paths."""
    message = _ADDR.sub(">", message)
    message = _FRAME.sub("", message)
    message = _SYS_PATH.sub("<path>", message)
    message = _FILE_PATH.sub("<path>", message)
    return message.strip()


def clean_loc(loc: Sequence[Any]) -> str:
    """Join a pydantic `loc` with dots, without pydantic's internal wrapper/union markers."""
    parts = [str(p) for p in loc if not (_BRACKETED.search(str(p)) or str(p).lower() in _INTERNAL_LOC)]
    return ".".join(parts) if parts else ".".join(str(p) for p in loc)


def _summarise_input(value: Any) -> str:
    if isinstance(value, dict | list | tuple | set | frozenset):
        return f"<{type(value).__name__} of {len(value)} items>"
    return str(value)


def _render_one(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    shown = dict(error)
    if "loc" in shown and isinstance(shown["loc"], tuple | list):
        shown["loc"] = clean_loc(shown["loc"])
    if "input" in shown:
        shown["input"] = _summarise_input(shown["input"])
    return str(shown)


def validation_error_body(errors: Sequence[Any]) -> dict[str, Any]:
    """The 400 body vLLM's `validation_exception_handler` sends for a RequestValidationError."""
    param: str | None = None
    if errors:
        first = errors[0]
        if isinstance(first, dict) and first.get("loc"):
            param = clean_loc(first["loc"])
    if errors:
        label = "error" if len(errors) == 1 else "errors"
        message = f"{len(errors)} validation {label}:\n" + "".join(f"  {_render_one(e)}\n" for e in errors)
        message = message.rstrip()
    else:
        message = "Validation error"
    return error_body(sanitize_message(message), err_type=HTTPStatus.BAD_REQUEST.phrase, code=400, param=param)


def error_body(message: str, *, err_type: str, code: int, param: str | None = None) -> dict[str, Any]:
    """vLLM's nested `ErrorResponse` (message already sanitised by the caller where vLLM does it)."""
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def vllm_error(message: str, *, err_type: str, code: int, param: str | None = None) -> dict[str, Any]:
    """`create_error_response`: sanitise, then wrap."""
    return error_body(sanitize_message(message), err_type=err_type, code=code, param=param)


def http_exception_body(status: int, detail: str) -> dict[str, Any]:
    """vLLM's handler for fastapi.HTTPException raised inside a route."""
    return error_body(sanitize_message(detail), err_type=HTTPStatus(status).phrase, code=status)
