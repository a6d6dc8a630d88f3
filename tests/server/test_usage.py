"""`POST /v1/usage`: a router's report is checked, bounded, taken by the leader, refused (never
lost) by a standby, and reaches the demand signals of the namespace's wanted adapters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lora_controller.reconcile.demand import MAX_REPORTED, DemandSignals, Reported
from lora_controller.scheduler.model import AdapterKey
from lora_controller.server.answers import ApiProblem, error_answer
from lora_controller.server.usage import UsageApi, parse_report


@dataclass
class View:
    """The part of FleetView the usage endpoint uses, over real demand signals."""

    signals: DemandSignals = field(default_factory=DemandSignals)
    known: dict[str, list[AdapterKey]] = field(default_factory=lambda: {
        "sql-lora": [AdapterKey("team-a", "res", "sql-lora")]})
    now: float = 100.0

    def report_usage(self, namespace: str, counts: Mapping[str, int], *,
                     window: float) -> Reported:
        return self.signals.report(self.known, counts, window=window, now=self.now)


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], View, list[bool]]]:
    view, leading = View(), [True]

    def served(namespace: str | None) -> str | None:
        if namespace == "elsewhere":
            raise ApiProblem(404, "NamespaceNotServed", "not served here")
        return namespace

    api = UsageApi(view, is_leader=lambda: leading[0], leader_url=lambda: "http://leader:8080",
                   served=served)  # type: ignore[arg-type]

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except ApiProblem as problem:
            return error_answer(problem)

    app = web.Application(middlewares=[errors])
    app.router.add_post("/v1/usage", api.post)
    async with TestClient(TestServer(app)) as c:
        yield c, view, leading


async def post(c: TestClient[Any, Any], body: Any, *, raw: bytes | None = None,
               content_type: str = "application/json") -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    r = await c.post("/v1/usage", data=data, headers={"Content-Type": content_type})
    return r.status, await r.json()


async def test_a_report_is_taken_and_unknown_adapters_ignored(client: Any) -> None:
    c, view, _ = client
    status, body = await post(c, {"namespace": "team-a", "windowSeconds": 10,
                                  "adapters": {"sql-lora": 120, "nobody-wants-me": 5}})
    assert (status, body) == (202, {"accepted": 1, "ignored": 1})
    key = AdapterKey("team-a", "res", "sql-lora")
    assert view.signals.rate(key, view.now, quiet_after=60) == pytest.approx(12, rel=0.05)
    assert len(view.signals.reports) == 1, "an adapter nobody wants takes no memory"


@pytest.mark.parametrize(("body", "reason", "code"), [
    ({"namespace": "Team A", "windowSeconds": 1, "adapters": {}}, "InvalidBody", 400),
    ({"namespace": "team-a", "windowSeconds": 0, "adapters": {}}, "InvalidBody", 400),
    ({"namespace": "team-a", "windowSeconds": 1e9, "adapters": {}}, "InvalidBody", 400),
    ({"namespace": "team-a", "windowSeconds": True, "adapters": {}}, "InvalidBody", 400),
    ({"namespace": "team-a", "windowSeconds": 1, "adapters": {"x": -1}}, "InvalidBody", 400),
    ({"namespace": "team-a", "windowSeconds": 1, "adapters": {"x": 1.5}}, "InvalidBody", 400),
    ({"namespace": "team-a", "windowSeconds": 1, "adapters": {"bad name!": 1}}, "InvalidBody",
     400),
    ({"namespace": "team-a", "windowSeconds": 1, "adapters": [1]}, "InvalidBody", 400),
    ({"namespace": "team-a", "windowSeconds": 1, "adapters": {}, "extra": 1}, "InvalidBody", 400),
    ({"namespace": "team-a", "windowSeconds": 1,
      "adapters": {f"a{i}": 1 for i in range(MAX_REPORTED + 1)}}, "TooManyAdapters", 413),
    ({"namespace": "elsewhere", "windowSeconds": 1, "adapters": {}}, "NamespaceNotServed", 404),
])
async def test_bad_reports_get_a_4xx_saying_why(client: Any, body: Any, reason: str,
                                                code: int) -> None:
    c, view, _ = client
    status, answer = await post(c, body)
    assert status == code and answer["error"]["reason"] == reason, answer
    assert len(view.signals.reports) == 0


async def test_not_json_is_refused(client: Any) -> None:
    c, _, _ = client
    assert (await post(c, None, raw=b"{nope"))[0] == 400
    assert (await post(c, None, raw=b"[" * 5000 + b"]" * 5000))[0] == 400
    assert (await post(c, {}, content_type="text/plain"))[0] == 415


async def test_a_standby_refuses_and_names_the_leader(client: Any) -> None:
    c, view, leading = client
    leading[0] = False
    r = await c.post("/v1/usage", json={"namespace": "team-a", "windowSeconds": 1,
                                        "adapters": {"sql-lora": 1}})
    body = await r.json()
    assert r.status == 503 and body["error"]["reason"] == "NotLeader"
    assert "http://leader:8080" in body["error"]["message"] and r.headers["Retry-After"] == "1"
    assert len(view.signals.reports) == 0, "refused, not silently taken"


def test_parse_report_keeps_counts() -> None:
    ns, window, counts = parse_report(b'{"namespace":"a","windowSeconds":2.5,"adapters":{"x":3}}')
    assert (ns, window, counts) == ("a", 2.5, {"x": 3})
