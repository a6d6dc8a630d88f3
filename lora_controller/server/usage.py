"""`POST /v1/usage`: routers report how many requests they routed to each adapter.

Body: `{"namespace": "team-a", "windowSeconds": 10, "adapters": {"sql-lora": 120, ...}}`, the
request counts of the window that just ended. Answer: 202 `{"accepted": N, "ignored": M}`
(adapters no resource of the namespace wants are ignored, so a report cannot grow memory). Only the
leader places adapters, so only the leader takes reports: a standby answers 503 `NotLeader` with
`Retry-After` and the leader's URL when it knows it, and the router sends the report there; a
report is refused, never silently dropped. Bad reports get a 4xx saying what is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from aiohttp import web

from lora_controller.reconcile.demand import MAX_REPORTED
from lora_controller.reconcile.view import FleetView
from lora_controller.server.answers import NAME, NAMESPACE, ApiProblem, json_answer

MAX_WINDOW = 3600.0
MAX_COUNT = 10**9


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiProblem(400, "InvalidBody", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "InvalidBody", "the body must be a JSON object")
    unknown = set(body) - {"namespace", "windowSeconds", "adapters"}
    if unknown:
        raise ApiProblem(400, "InvalidBody", f"unknown fields: {', '.join(sorted(unknown))[:200]}")
    return body


def parse_report(raw: bytes) -> tuple[str, float, dict[str, int]]:
    """(namespace, window seconds, counts) of a usage report, or an ApiProblem saying what is off."""
    body = _body(raw)
    namespace, window, adapters = body.get("namespace"), body.get("windowSeconds"), \
        body.get("adapters")
    if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
        raise ApiProblem(400, "InvalidBody", "namespace must be a namespace name")
    if isinstance(window, bool) or not isinstance(window, int | float) or not (
            math.isfinite(window) and 0 < window <= MAX_WINDOW):
        raise ApiProblem(400, "InvalidBody",
                         f"windowSeconds must be a number above 0 and at most {MAX_WINDOW:g}")
    if not isinstance(adapters, dict):
        raise ApiProblem(400, "InvalidBody", "adapters must be an object: adapter name -> count")
    if len(adapters) > MAX_REPORTED:
        raise ApiProblem(413, "TooManyAdapters",
                         f"a report may name at most {MAX_REPORTED} adapters; split it")
    counts: dict[str, int] = {}
    for name, count in adapters.items():
        if not NAME.match(name):
            raise ApiProblem(400, "InvalidBody", f"adapter name {name[:80]!r} is not valid")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise ApiProblem(400, "InvalidBody",
                             f"the count of {name} must be an integer from 0 to {MAX_COUNT}")
        counts[name] = count
    return namespace, float(window), counts


class UsageApi:
    def __init__(self, view: FleetView, *, is_leader: Callable[[], bool],
                 leader_url: Callable[[], str | None],
                 served: Callable[[str | None], str | None]) -> None:
        self.view = view
        self.is_leader = is_leader
        self.leader_url = leader_url
        self.served = served

    async def post(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise ApiProblem(415, "UnsupportedMediaType", "send the report as application/json")
        namespace, window, counts = parse_report(await request.read())
        self.served(namespace)
        if not self.is_leader():
            leader = self.leader_url()
            hint = f"; send it to the leader at {leader}" if leader else ""
            raise ApiProblem(503, "NotLeader",
                             f"this replica does not lead and does not take usage reports{hint}",
                             retry_after=1)
        done = self.view.report_usage(namespace, counts, window=window)
        return json_answer({"accepted": done.accepted, "ignored": done.ignored}, 202)
