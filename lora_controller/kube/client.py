"""A thin, typed, JSON-in/JSON-out client over kubernetes_asyncio's HTTP machinery.

kubernetes_asyncio gives us kubeconfig and in-cluster configuration (including token refresh) and an
aiohttp session; its generated models are slow and large for caches of thousands of objects, and it
has no request timeout by default (kubernetes_asyncio #360: stuck watches). So every call here goes
through `KubeClient.request` with raw JSON dicts and an explicit timeout, and API errors become
`ApiError` with the status, reason and message of the API server's Status object.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from prometheus_client import Counter

from lora_controller.kube.clientlib import (
    ApiClient,
    Configuration,
    load_incluster_config,
    load_kube_config,
)
from lora_controller.kube.resources import ResourceKind

JSON = dict[str, Any]

API_REQUESTS = Counter("lora_controller_kube_requests_total",
                       "Requests this process sent to the API server, by verb and status code.",
                       ["verb", "code"])

DEFAULT_TIMEOUT = 30.0
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class ApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str, *, retry_after: float | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410 or self.reason in ("Expired", "Gone")

    @property
    def retryable(self) -> bool:
        return self.status in (0, 408, 429, 500, 502, 503, 504) or self.conflict


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: JSON


def _error_from_body(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    reason, message = "", body.decode("utf-8", errors="replace")[:2000]
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            reason = str(doc.get("reason", ""))
            message = str(doc.get("message", message))
    except ValueError:
        pass
    retry_after: float | None = None
    raw = headers.get("Retry-After")
    if raw:
        try:
            retry_after = float(raw)
        except ValueError:
            retry_after = None
    return ApiError(status, reason or f"HTTP{status}", message, retry_after=retry_after)


class KubeClient:
    """JSON requests to the API server, each with a timeout.

    At most `concurrency` requests run at once; watches are not counted: each holds its connection
    for minutes, and one per namespace must never starve the requests (with watches drawn from the
    same bounded pool, 32 namespaces would take every connection and block every write)."""

    def __init__(self, api: ApiClient, *, timeout: float = DEFAULT_TIMEOUT,
                 concurrency: int = 32) -> None:
        self.api = api
        self.timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)

    @classmethod
    async def from_config(
        cls, *, kubeconfig: str | None = None, timeout: float = DEFAULT_TIMEOUT, pool_size: int = 32,
        context: str | None = None,
    ) -> KubeClient:
        """From a kubeconfig file when given (or $KUBECONFIG), else the in-cluster service account;
        `context` picks a kubeconfig context other than its current one. `pool_size`: requests at
        once (each a TLS connection of its own, 256 KiB of read buffer), watches besides."""
        cfg = Configuration()
        path = kubeconfig or os.environ.get("KUBECONFIG")
        if path:
            await load_kube_config(config_file=path, client_configuration=cfg, context=context)
        else:
            load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        cfg.connection_pool_maxsize = 0  # no limit in the connector: the requests' is ours
        return cls(ApiClient(configuration=cfg), timeout=timeout, concurrency=pool_size)

    async def close(self) -> None:
        await self.api.close()

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        params = [(k, str(v).lower() if isinstance(v, bool) else str(v))
                  for k, v in (query or {}).items()]
        verb = "WATCH" if query and query.get("watch") else method
        try:
            resp = await self.api.call_api(
                path, method, query_params=params,
                header_params={**(headers or {}), "Content-Type": content_type,
                               "Accept": "application/json"},
                body=body, auth_settings=["BearerToken"], _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, OSError) as exc:
            API_REQUESTS.labels(verb, "error").inc()
            raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            API_REQUESTS.labels(verb, "timeout").inc()
            raise ApiError(0, "Timeout", f"no answer from the API server within {timeout.total}s") from exc
        response = cast(aiohttp.ClientResponse, resp)
        API_REQUESTS.labels(verb, str(response.status)).inc()
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSON:
        total = timeout or self.timeout
        ctimeout = aiohttp.ClientTimeout(total=total)
        async with self._slots:
            resp = await self._send(method, path, query=query, body=body,
                                    content_type=content_type, timeout=ctimeout, headers=headers)
            try:
                async with asyncio.timeout(total):
                    data = await resp.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}") from exc
            finally:
                resp.release()
        if not 200 <= resp.status < 300:
            raise _error_from_body(resp.status, data, resp.headers)
        return cast(JSON, json.loads(data)) if data else {}

    # -- typed helpers -------------------------------------------------------------------------
    async def get(self, kind: ResourceKind, name: str, *, namespace: str | None = None) -> JSON:
        return await self.request("GET", kind.path(namespace=namespace, name=name))

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        query: dict[str, str | int | bool] = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        if resource_version is not None:
            query["resourceVersion"] = resource_version
        if limit:
            query["limit"] = limit
        if continue_token:
            query["continue"] = continue_token
        return await self.request("GET", kind.path(namespace=namespace), query=query,
                                  timeout=timeout)

    async def create(self, kind: ResourceKind, body: JSON, *, namespace: str | None = None) -> JSON:
        return await self.request("POST", kind.path(namespace=namespace), body=body)

    async def replace(
        self, kind: ResourceKind, name: str, body: JSON, *, namespace: str | None = None,
        subresource: str | None = None,
    ) -> JSON:
        return await self.request(
            "PUT", kind.path(namespace=namespace, name=name, subresource=subresource), body=body
        )

    async def patch(
        self,
        kind: ResourceKind,
        name: str,
        body: Any,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
        field_manager: str | None = None,
        force: bool = False,
    ) -> JSON:
        query: dict[str, str | int | bool] = {}
        if field_manager:
            query["fieldManager"] = field_manager
        if force:
            query["force"] = True
        return await self.request(
            "PATCH", kind.path(namespace=namespace, name=name, subresource=subresource),
            body=body, content_type=content_type, query=query,
        )

    async def delete(self, kind: ResourceKind, name: str, *, namespace: str | None = None) -> JSON:
        return await self.request("DELETE", kind.path(namespace=namespace, name=name))

    async def watch(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        connect_timeout: float = 10.0,
    ) -> AsyncIterator[WatchEvent]:
        """Stream watch events; ends cleanly when the server's timeout closes the stream.

        The client-side read timeout is the server-side one plus a margin: bookmarks arrive about
        every minute, so a silent stream for longer than that is a stuck connection.
        """
        query: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
        }
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        ctimeout = aiohttp.ClientTimeout(
            total=timeout_seconds + 60, connect=connect_timeout, sock_connect=connect_timeout,
            sock_read=min(timeout_seconds + 30, 120),
        )
        resp = await self._send("GET", kind.path(namespace=namespace), query=query,
                                timeout=ctimeout)
        try:
            if not 200 <= resp.status < 300:
                raise _error_from_body(resp.status, await resp.read(), resp.headers)
            buffer = b""
            try:
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            doc = json.loads(line)
                            yield WatchEvent(str(doc.get("type", "")), doc.get("object") or {})
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise ApiError(0, "ConnectionError", f"watch broken: {type(exc).__name__}") from exc
        finally:
            resp.close()  # a watch is never reused: drop the connection

