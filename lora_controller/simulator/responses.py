"""Responses shaped like the ones vLLM's FastAPI/Starlette server sends, and request-body parsing like FastAPI's.

Two details matter for a client that reads them: vLLM's plain-text successes carry no content-type
at all (aiohttp would add `application/octet-stream`, so `BareResponse` removes it), and JSON is
rendered compactly as Starlette does. `read_json_body` follows FastAPI's order for a route with a
JSON body and vLLM's `validate_json_request` dependency: decode errors first, then the media-type
check, then pydantic validation.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

from aiohttp import hdrs, web
from pydantic import TypeAdapter, ValidationError

from lora_controller.simulator.errors import http_exception_body, validation_error_body
from lora_controller.simulator.protocol import body_errors

T = TypeVar("T")

UNSUPPORTED_MEDIA_TYPE = "Unsupported Media Type: Only 'application/json' is allowed"


class BareResponse(web.Response):
    """A response sent without a content-type header, as Starlette's `Response(content=...)`."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self._headers.pop(hdrs.CONTENT_TYPE, None)


def bare(status: int, text: str = "", headers: dict[str, str] | None = None) -> web.Response:
    """Plain body, no content-type (vLLM's load/unload successes, /health)."""
    return BareResponse(status=status, body=text.encode(), headers=headers)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """`application/json` rendered as Starlette's JSONResponse does."""
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def not_found() -> web.Response:
    """Starlette's 404 for an unknown route."""
    return json_response({"detail": "Not Found"}, status=404)


def method_not_allowed(allowed: list[str]) -> web.Response:
    """Starlette's 405 for a known path with another method."""
    return json_response({"detail": "Method Not Allowed"}, status=405, headers={"Allow": ", ".join(allowed)})


class BodyError(Exception):
    """The request is answered with `response` before the route handler runs."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("request body rejected")
        self.response = response


def _is_json_content_type(value: str) -> bool:
    message = email.message.Message()
    message["content-type"] = value
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


async def decode_body(request: web.Request) -> Any:
    """FastAPI's body decoding: JSON when the content type says so (or is absent); None when empty."""
    raw = await request.read()
    if not raw:
        return None
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if content_type and not _is_json_content_type(content_type):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {},
                 "ctx": {"error": exc.msg}}
        raise BodyError(json_response(validation_error_body([error]), status=400)) from None
    except ValueError:  # UnicodeDecodeError and friends: FastAPI's generic "error parsing the body"
        raise BodyError(json_response(http_exception_body(400, "There was an error parsing the body"), status=400)) from None


def check_json_media_type(request: web.Request) -> None:
    """vLLM's `validate_json_request` dependency."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "").lower()
    if content_type.split(";", maxsplit=1)[0] != "application/json":
        raise BodyError(json_response(validation_error_body([UNSUPPORTED_MEDIA_TYPE]), status=400))


async def read_json_body(request: web.Request, adapter: TypeAdapter[T]) -> T:
    """Decode, check the media type, validate: a route body as FastAPI gives it to vLLM's handler."""
    body = await decode_body(request)
    check_json_media_type(request)
    if body is None:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise BodyError(json_response(validation_error_body([missing]), status=400))
    try:
        return adapter.validate_python(body, from_attributes=True)
    except ValidationError as exc:
        errors = body_errors(exc.errors(include_url=False))
        raise BodyError(json_response(validation_error_body(errors), status=400)) from None
