"""The fleet API: what the placement view and `kubectl lora` read, and the dry run they ask for.

- `GET /v1/fleet[?namespace=N]`: LoraAdapters (phase, counts, failed adapters, conditions), pods
  (capacity and use), namespaces and base models, recent Events and load/unload outcomes.
- `GET /v1/fleet/adapters[?namespace&baseModel&loraAdapter&search&offset&limit]`: one page of
  adapters with the pods each is placed, confirmed and failed on (the matrix's rows).
- `GET /v1/adapters/{name}/why[?namespace=N]`: the scheduler's reason, the adapter's needs, the
  pods it may use with their free capacity, and why every other pod is ruled out.
- `POST /v1/plan[?namespace=N]`: a dry run of the LoraAdapters in the body (plan.py).

Reads come from `FleetView` only; GETs carry an ETag, so a page that polls is answered 304 while
nothing changed. Plans are bounded: the body's size, the objects per plan, two at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from lora_controller.reconcile.view import AdapterInfo, FleetView
from lora_controller.scheduler.model import AdapterKey
from lora_controller.server import fleet, plan, why
from lora_controller.server.answers import (
    NAME,
    NAMESPACE,
    ApiProblem,
    cached_answer,
    int_query,
    json_answer,
    path_param,
    query,
)

PLAN_TIMEOUT = 60.0
PLANS_AT_ONCE = 2
MAX_PAGE = 1000
EVENTS = 50


class FleetApi:
    def __init__(self, view: FleetView, *, served: Callable[[str | None], str | None],
                 find: Callable[[str, str | None], AdapterInfo],
                 is_leader: Callable[[], bool]) -> None:
        """`served` checks a namespace (404 for one not served), `find` an adapter by name."""
        self.view = view
        self.served = served
        self.find = find
        self.is_leader = is_leader
        self._plans = asyncio.Semaphore(PLANS_AT_ONCE)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/fleet", self.fleet)
        app.router.add_get("/v1/fleet/adapters", self.adapters)
        app.router.add_get("/v1/adapters/{name}/why", self.why)
        app.router.add_post("/v1/plan", self.plan)

    async def fleet(self, request: web.Request) -> web.Response:
        ns = self.served(query(request, "namespace", NAMESPACE))
        return cached_answer(request, fleet.fleet(
            self.view.lora_adapters(ns), self.view.pods(ns), self.view.recent_events(ns, EVENTS),
            self.view.recent_actions(ns, EVENTS), synced=self.view.synced,
            leader=self.is_leader()))

    async def adapters(self, request: web.Request) -> web.Response:
        ns = self.served(query(request, "namespace", NAMESPACE))
        offset = int_query(request, "offset", default=0, low=0, high=10**7)
        limit = int_query(request, "limit", default=100, low=1, high=MAX_PAGE)
        base_model = query(request, "baseModel")
        models: dict[tuple[str, str], str | None] = {}

        def model(key: AdapterKey) -> str | None:
            if (key.namespace, key.cr) not in models:
                cr = self.view.lora_adapter(key.namespace, key.cr)
                models[(key.namespace, key.cr)] = cr.spec.base_model if cr else None
            return models[(key.namespace, key.cr)]

        found = fleet.matching(self.view.adapter_keys(ns), lora_adapter=query(
            request, "loraAdapter", NAME), search=query(request, "search"))
        if base_model is not None:
            found = [k for k in found if model(k) == base_model]
        page = [a for k in found[offset:offset + limit] if (a := self.view.adapter(k))]
        return cached_answer(request, {"total": len(found), "offset": offset, "limit": limit,
                                       "adapters": [fleet.adapter_row(a) for a in page]})

    async def why(self, request: web.Request) -> web.Response:
        name = path_param(request, "name", NAME)
        adapter = self.find(name, self.served(query(request, "namespace", NAMESPACE)))
        placing = self.view.placing(adapter)
        if placing is None:
            raise ApiProblem(404, "AdapterNotFound", f"adapter {name!r} is not selected any more",
                             retry_after=1)
        return cached_answer(request, why.why(placing, self.view.pods(adapter.namespace)))

    async def plan(self, request: web.Request) -> web.Response:
        namespace = self.served(query(request, "namespace", NAMESPACE))
        if request.content_type != "application/json":
            raise ApiProblem(415, "UnsupportedMediaType",
                             "send the LoraAdapters as JSON (Content-Type: application/json)")
        body = await _read(request)
        changes = plan.parse(body, namespace)
        for ns in changes:
            self.served(ns)
        if not self.view.synced:
            raise ApiProblem(503, "NotSynced", "informer caches are not synced yet", retry_after=1)
        if self._plans.locked():
            raise ApiProblem(429, "TooManyPlans", f"{PLANS_AT_ONCE} plans are running; try again",
                             retry_after=1)
        async with self._plans:
            out = []
            now = datetime.now(UTC)
            for ns, crs in sorted(changes.items()):
                applied = [plan.as_applied(c, self.view.lora_adapter(ns, c.metadata.name), now)
                           for c in crs]
                try:
                    async with asyncio.timeout(PLAN_TIMEOUT):
                        result = await self.view.dry_run(ns, applied)
                except TimeoutError:
                    raise ApiProblem(504, "PlanTimeout", f"the dry run of namespace {ns} took "
                                     f"over {PLAN_TIMEOUT:g}s (a slow source?)") from None
                out.append(plan.plan_json(result, [c.metadata.name for c in crs]))
        return json_answer({"applied": False, "namespaces": out})


async def _read(request: web.Request) -> bytes:
    """The body, refused past plan.MAX_BODY bytes without reading the rest."""
    if request.content_length is not None and request.content_length > plan.MAX_BODY:
        raise ApiProblem(413, "RequestTooLarge", f"the body is over {plan.MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > plan.MAX_BODY:
            raise ApiProblem(413, "RequestTooLarge", f"the body is over {plan.MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
