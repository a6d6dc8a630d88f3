"""The router's HTTP connections: requests aiohttp cannot parse, answered and logged our way.

aiohttp answers a request it cannot parse (a request line or a header field over its 8190-byte
limits, bytes that are not HTTP) by itself, before any route or middleware runs, in
`RequestHandler.handle_error`, and logs it at error level with the exception, whose message and
traceback quote the raw request bytes, bearer token included, in about 50 lines that any client
can have repeated at will. `RouterRequestHandler` replaces that one step: the answer is the router
API's JSON error (`{"error": {"reason", "message"}}`, reason `RequestTooLarge` or
`MalformedRequest`), and the warning line names the reason and the client's address, never the
exception's text nor a byte of the request; it is logged at most once per `REFUSED_INTERVAL`
seconds, with the count of those suppressed in between (the metric counts every one).
`RouterRunner` is aiohttp's `AppRunner` with connections of that class.
"""

from __future__ import annotations

import json
import math

import structlog
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from prometheus_client import Counter

from lora_controller.core.clock import Clock, RealClock

log = structlog.get_logger(__name__)

REFUSED = "router API refused a request it could not parse"
REFUSED_INTERVAL = 60.0
MAX_LINE = 8190  # aiohttp's limits on the request line and on each header field, in bytes

REJECTED = Counter("lora_controller_router_rejected_requests_total",
                   "Requests the router API could not parse, by reason.", ["reason"])


def classify(exc: BaseException | None) -> tuple[str, str]:
    """The reason and message answered for a request that failed to parse with `exc`."""
    if isinstance(exc, LineTooLong):
        return "RequestTooLarge", (f"the request line or a header field is longer than {MAX_LINE} "
                                   "bytes, the most this server reads")
    return "MalformedRequest", "the request is not valid HTTP/1.1"


class LogLimit:
    """At most one line per `interval` seconds; the next line allowed says how many were not."""

    def __init__(self, interval: float, *, clock: Clock | None = None) -> None:
        self.interval = interval
        self.clock = clock or RealClock()
        self._next = -math.inf
        self._suppressed = 0

    def allow(self) -> int | None:
        """None when this line is to be dropped, else the number dropped since the last one."""
        now = self.clock.monotonic()
        if now < self._next:
            self._suppressed += 1
            return None
        self._next = now + self.interval
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


_REFUSED_LOG = LogLimit(REFUSED_INTERVAL)


class RouterRequestHandler(RequestHandler):
    """aiohttp's connection handler, minus the traceback that quoted the request's bytes."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            # Not a client's mistake: an exception escaped the router's own error handling.
            log.error("router API request failed outside its handlers", status=status,
                      error=type(exc).__name__ if exc else None, exc_info=exc)
            reason, text = "InternalError", "the controller failed to answer"
        else:
            reason, text = classify(exc)
            REJECTED.labels(reason).inc()
            suppressed = _REFUSED_LOG.allow()
            if suppressed is not None:
                log.warning(REFUSED, status=status, reason=reason, remote=request.remote,
                            suppressed=suppressed)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent on this connection")
        body = {"error": {"reason": reason, "message": text}}
        response = web.Response(status=status, text=json.dumps(body, separators=(",", ":")),
                                content_type="application/json")
        response.force_close()
        return response


class _RouterServer(web.Server):
    def __call__(self) -> RequestHandler:
        return RouterRequestHandler(self, loop=self._loop, **self._kwargs)


class RouterRunner(web.AppRunner):
    """aiohttp's AppRunner whose connections are `RouterRequestHandler`s."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _RouterServer(server.request_handler, request_factory=server.request_factory,
                             handler_cancellation=server.handler_cancellation,
                             loop=server._loop, **server._kwargs)
