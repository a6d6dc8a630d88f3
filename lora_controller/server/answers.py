"""The API's way of answering: JSON bodies, JSON errors with a reason, checked request parameters.

Every route of the controller's listener (the router API, the fleet API, the dry run) answers
through these, so that errors have one shape, `{"error": {"reason", "message"}}`, with
`Retry-After` where waiting helps, and query and path parameters are checked the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aiohttp import web

NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
MAX_QUERY = 512


class ApiProblem(Exception):
    def __init__(self, status: int, reason: str, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON as UTF-8 bytes (RFC 8259: no charset parameter; the text path costs a re-encode)."""
    return web.Response(body=json.dumps(data, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


def cached_answer(request: web.Request, data: Any) -> web.Response:
    """A JSON answer with an ETag; 304 when the client already has it (pollers re-read cheaply)."""
    body = json.dumps(data, separators=(",", ":")).encode()
    tag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if tag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def error_answer(problem: ApiProblem) -> web.Response:
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after else None
    return json_answer({"error": {"reason": problem.reason, "message": problem.message}},
                       problem.status, headers)


def http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own error (no route, wrong method) in the API's shape, its headers kept (Allow)."""
    message = exc.text or exc.reason
    if isinstance(exc, web.HTTPMethodNotAllowed):
        message = (f"method {exc.method} is not allowed on {request.path[:200]}; "
                   f"allowed: {', '.join(sorted(exc.allowed_methods))}")
    headers = {k: v for k, v in exc.headers.items()
               if k.lower() not in ("content-type", "content-length")}
    return json_answer({"error": {"reason": exc.reason.replace(" ", ""), "message": message}},
                       exc.status, headers)


_CONTROL = re.compile("[\x00-\x1f\x7f\ufffd]")  # control characters, undecodable bytes


def query(request: web.Request, name: str, pattern: re.Pattern[str] | None = None) -> str | None:
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise ApiProblem(400, "InvalidQuery", f"query parameter {name} given more than once")
    value = values[0]
    if not value or len(value) > MAX_QUERY:
        raise ApiProblem(400, "InvalidQuery", f"query parameter {name} must be 1-{MAX_QUERY} characters")
    if _CONTROL.search(value):
        raise ApiProblem(400, "InvalidQuery",
                         f"query parameter {name} must be UTF-8 text without control characters")
    if pattern is not None and not pattern.match(value):
        raise ApiProblem(400, "InvalidQuery", f"query parameter {name}={value[:80]!r} is not valid")
    return value


def bool_query(request: web.Request, name: str) -> bool:
    value = query(request, name)
    if value is None:
        return False
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ApiProblem(400, "InvalidQuery", f"query parameter {name} must be true or false")


def int_query(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    value = query(request, name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ApiProblem(400, "InvalidQuery",
                         f"query parameter {name} must be an integer from {low} to {high}")
    return int(value)


def path_param(request: web.Request, name: str, pattern: re.Pattern[str]) -> str:
    value = request.match_info[name]
    if not pattern.match(value):
        raise ApiProblem(400, "InvalidPath", f"{name} {value[:80]!r} is not a valid name")
    return value
