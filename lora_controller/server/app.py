"""The HTTP server: the router API, Prometheus metrics, health, and the API's OpenAPI document.

The router API is the contract routers rely on; its paths are fixed:

- `GET /v1/adapters?baseModel=X[&namespace=N]`: ListAvailableAdapters, each adapter with the pods
  that confirm it on `/v1/models`.
- `GET /v1/adapters/{name}/pods[?namespace=N][&ensure=true]`: GetPodsForAdapter; `ensure=true`
  loads a lazy (`loadOnStartup: false`) adapter and answers once a pod confirms it.
- `GET /v1/pods/{namespace}/{name}/adapters`: GetPodAdapters.
- `GET /v1/loraadapters/{namespace}/{name}`: GetAdapterStatus (with each demand-scaled adapter's
  smoothed rate and why it has the replicas it has).
- `POST /v1/usage`: routers report the requests they routed per adapter (usage.py).
- `GET /metrics`, `/healthz`, `/readyz`, `/openapi.json`.
- The fleet API (fleetapi.py: `GET /v1/fleet`, `/v1/fleet/adapters`, `/v1/adapters/{name}/why`,
  `POST /v1/plan`) and the placement view at `GET /` (page.py).

Answers come from the confirmed, observed placement (never from intent). Every replica serves it.
Errors are JSON `{"error": {"reason", "message"}}`, with `Retry-After` where waiting helps. An
optional token protects `/v1/*` and the view (auth.py: a header, or the view's cookie for reads). A controller limited to some namespaces (`--namespace`)
answers 404 `NamespaceNotServed` for any other namespace a request names, so that a router can tell
"not here" from "does not exist".
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from lora_controller.reconcile.view import AdapterInfo, EnsureFailed, FleetView, PodInfo
from lora_controller.server.answers import NAME as _NAME
from lora_controller.server.answers import NAMESPACE as _NAMESPACE
from lora_controller.server.answers import ApiProblem
from lora_controller.server.answers import bool_query as _bool_query
from lora_controller.server.answers import error_answer as _error
from lora_controller.server.answers import http_error as _http_error
from lora_controller.server.answers import json_answer as _json
from lora_controller.server.answers import path_param as _path
from lora_controller.server.answers import query as _query
from lora_controller.server.auth import authorized
from lora_controller.server.fleetapi import FleetApi
from lora_controller.server.openapi import OPENAPI
from lora_controller.server.page import Page
from lora_controller.server.usage import UsageApi

log = structlog.get_logger(__name__)

ROUTER_REQUESTS = Counter("lora_controller_router_requests_total",
                          "Router API requests by endpoint and status code.", ["endpoint", "code"])
ROUTER_SECONDS = Histogram("lora_controller_router_request_seconds",
                           "Router API request duration.", ["endpoint"],
                           buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5))

ENSURE_TIMEOUT = 60.0


@functools.lru_cache(maxsize=1024)
def _requests(endpoint: str, code: int) -> Any:
    """The counter of one endpoint and status (prometheus_client's `labels` takes a lock and
    builds a key on every call: looked up once per pair instead of once per request)."""
    return ROUTER_REQUESTS.labels(endpoint, str(code))


@functools.lru_cache(maxsize=256)
def _seconds(endpoint: str) -> Any:
    return ROUTER_SECONDS.labels(endpoint)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pod_json(pod: PodInfo) -> dict[str, Any]:
    return {"name": pod.name, "namespace": pod.namespace, "ip": pod.ip, "port": pod.port,
            "baseUrl": pod.base_url, "ready": pod.ready,
            "observedAt": _stamp(pod.observed_at) if pod.observed_at else None}


@functools.lru_cache(maxsize=8192)
def _stamp(at: datetime) -> str:
    """A pod's observedAt as RFC 3339 (UTC): formatted once per read of the pod, not per answer
    (strftime was a tenth of the time of a GetPodsForAdapter answer)."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RouterApi:
    def __init__(
        self,
        view: FleetView,
        *,
        token: str | None = None,
        is_leader: Callable[[], bool] = lambda: True,
        leader_url: Callable[[], str | None] = lambda: None,
        namespaces: Collection[str] | None = None,
    ) -> None:
        """`namespaces`: those this controller serves (its --namespace); None serves all."""
        self.view = view
        self.namespaces = frozenset(namespaces) if namespaces is not None else None
        self.token = token
        self.is_leader = is_leader
        self.leader_url = leader_url
        self.usage = UsageApi(view, is_leader=is_leader, leader_url=leader_url,
                              served=self._served)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024)
        app.router.add_get("/v1/adapters", self.list_adapters)
        app.router.add_get("/v1/adapters/{name}/pods", self.adapter_pods)
        app.router.add_get("/v1/pods/{namespace}/{name}/adapters", self.pod_adapters)
        app.router.add_get("/v1/loraadapters/{namespace}/{name}", self.adapter_status)
        app.router.add_post("/v1/usage", self.usage.post)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/openapi.json", self.openapi)
        FleetApi(self.view, served=self._served, find=self._find,
                 is_leader=self.is_leader).add_routes(app)
        Page(self.token).add_routes(app)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else "unknown"
        started = time.perf_counter()
        try:
            if request.path.startswith("/v1/") and not authorized(request, self.token):
                raise ApiProblem(401, "Unauthorized", "a valid bearer token is required")
            response = await handler(request)
        except ApiProblem as problem:
            response = _error(problem)
        except web.HTTPException as exc:
            response = _http_error(request, exc)
        except Exception:
            log.exception("router API handler failed", path=request.path)
            response = _json({"error": {"reason": "InternalError",
                                        "message": "the controller failed to answer"}}, 500)
        _requests(endpoint, response.status).inc()
        _seconds(endpoint).observe(time.perf_counter() - started)
        return response

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _adapter_json(a: AdapterInfo) -> dict[str, Any]:
        return {
            "name": a.name,
            "namespace": a.namespace,
            "loraAdapter": a.lora_adapter,
            "baseModel": a.base_model,
            "lazy": a.lazy,
            "pods": [pod_json(p) for p in a.confirmed],
        }

    def _served(self, namespace: str | None) -> str | None:
        """`namespace`, once it is known to be one this controller serves."""
        if namespace is not None and self.namespaces is not None and namespace not in self.namespaces:
            raise ApiProblem(404, "NamespaceNotServed",
                             f"namespace {namespace} is not served by this controller, which serves "
                             f"only {', '.join(sorted(self.namespaces))} (its --namespace); ask the "
                             f"controller that serves {namespace}")
        return namespace

    def _find(self, name: str, namespace: str | None) -> AdapterInfo:
        matches = self.view.adapters_named(name, namespace)
        if not matches:
            where = f" in namespace {namespace}" if namespace else ""
            raise ApiProblem(404, "AdapterNotFound",
                             f"no LoraAdapter serves an adapter named {name!r}{where}")
        if len({a.namespace for a in matches}) > 1:
            raise ApiProblem(409, "AmbiguousAdapter",
                             f"adapter {name!r} exists in several namespaces; add ?namespace=")
        return matches[0]

    # -- handlers --------------------------------------------------------------------------
    async def list_adapters(self, request: web.Request) -> web.Response:
        base_model = _query(request, "baseModel")
        namespace = self._served(_query(request, "namespace", _NAMESPACE))
        available = [self._adapter_json(a) for a in self.view.adapters(namespace)
                     if (base_model is None or a.base_model == base_model)
                     and (a.confirmed or a.lazy)]
        return _json({"baseModel": base_model, "adapters": available})

    async def adapter_pods(self, request: web.Request) -> web.Response:
        name = _path(request, "name", _NAME)
        namespace = self._served(_query(request, "namespace", _NAMESPACE))
        ensure = _bool_query(request, "ensure")
        adapter = self._find(name, namespace)
        self.view.note_lookup(adapter)  # a router's cache miss: a weak sign of demand
        pods = list(adapter.confirmed)
        if ensure and not pods:
            pods = await self._ensure(adapter)
        body = {"adapter": name, "namespace": adapter.namespace,
                "loraAdapter": adapter.lora_adapter, "baseModel": adapter.base_model,
                "pods": [pod_json(p) for p in pods]}
        return _json(body)

    async def _ensure(self, adapter: AdapterInfo) -> list[PodInfo]:
        if (adapter.placed or adapter.scaling) and not self.is_leader():
            leader = self.leader_url()
            hint = f"; the leader answers at {leader}" if leader else ""
            raise ApiProblem(503, "NotLeader",
                             f"this replica does not lead and cannot load adapters{hint}",
                             retry_after=1)
        try:
            return await self.view.ensure(adapter, timeout=ENSURE_TIMEOUT)
        except EnsureFailed as exc:
            raise ApiProblem(503, exc.reason, exc.message, retry_after=exc.retry_after) from None

    async def pod_adapters(self, request: web.Request) -> web.Response:
        namespace = _path(request, "namespace", _NAMESPACE)
        name = _path(request, "name", _NAME)
        self._served(namespace)
        detail = self.view.pod(namespace, name)
        if detail is None:
            raise ApiProblem(404, "PodNotFound",
                             f"pod {namespace}/{name} is not a pod this controller follows")
        return _json({
            "pod": pod_json(detail.pod),
            "observed": detail.observed,
            "error": detail.error,
            "adapters": [{"name": n, "root": r} for n, r in detail.adapters],
            "placed": list(detail.placed),
        })

    async def adapter_status(self, request: web.Request) -> web.Response:
        namespace = _path(request, "namespace", _NAMESPACE)
        name = _path(request, "name", _NAME)
        self._served(namespace)
        cr = self.view.lora_adapter(namespace, name)
        if cr is None:
            raise ApiProblem(404, "LoraAdapterNotFound", f"LoraAdapter {namespace}/{name} not found")
        adapters = [{
            "name": a.name, "path": a.path, "version": a.version, "lazy": a.lazy,
            "placedPods": list(a.placed), "confirmedPods": [p.name for p in a.confirmed],
            **({"demandRps": a.demand_rps, "scaling": a.scaling} if a.scaling else {}),
        } for a in self.view.adapters(namespace) if a.lora_adapter == name]
        status = cr.status.model_dump(mode="json", by_alias=True, exclude_none=True) if cr.status else {}
        return _json({"name": name, "namespace": namespace, "baseModel": cr.spec.base_model,
                      "adapters": adapters, "status": status})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if not self.view.synced:
            raise ApiProblem(503, "NotSynced", "the caches are not synced, or not every namespace "
                             "was read once yet", retry_after=1)
        return _json({"status": "ready", "leader": self.is_leader()})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(OPENAPI)
