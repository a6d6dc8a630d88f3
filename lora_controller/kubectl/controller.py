"""Reaching the controller's HTTP API: through the API server's service proxy, or a given URL.

By default the controller is found as kubectl users find services: its Service (the Helm chart's,
labelled `app.kubernetes.io/name=lora-controller`, port `http`), reached through the API server's
service proxy with the kubeconfig's credentials, so no port-forward is needed. The API server
authenticates the caller with the Authorization header and removes it, so the router token (when
the controller has one) travels as `X-Lora-Router-Token` there, and as a bearer token to a direct
`--controller-url`. Every call has a timeout; every failure is one `ControllerError` whose message
is one line a person can act on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp

from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.resources import ResourceKind

JSON = dict[str, Any]
SERVICES = ResourceKind("", "v1", "services", "Service")
SERVICE_LABEL = "app.kubernetes.io/name=lora-controller"
TOKEN_HEADER = "X-Lora-Router-Token"
TIMEOUT = 90.0


class ControllerError(Exception):
    """The controller could not be reached or refused the request; the message is one line."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Controller(Protocol):
    @property
    def where(self) -> str: ...

    async def call(self, method: str, path: str, query: Mapping[str, str | int] | None = None,
                   body: Any = None) -> JSON: ...

    async def close(self) -> None: ...


def _problem(status: int, text: str, where: str) -> ControllerError:
    """The controller's JSON error (or the API server's Status) as one line."""
    reason, message = "", text.strip()[:500]
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            reason, message = str(doc["error"].get("reason", "")), str(doc["error"].get("message"))
        elif isinstance(doc, dict) and "message" in doc:
            reason, message = str(doc.get("reason", "")), str(doc["message"])
    except ValueError:
        pass
    if status == 401:
        message += " (give the controller's router token: --token-file or $LORA_ROUTER_TOKEN)"
    return ControllerError(f"{where} answered {status}{' ' + reason if reason else ''}: "
                           f"{' '.join(message.split())}", status=status, reason=reason)


def _path(path: str, query: Mapping[str, str | int] | None) -> str:
    return path + ("?" + urlencode({k: str(v) for k, v in query.items()}) if query else "")


@dataclass
class Direct:
    """The controller at a URL (`--controller-url`, e.g. after `kubectl port-forward`)."""

    url: str
    token: str | None
    session: aiohttp.ClientSession

    @property
    def where(self) -> str:
        return f"the controller at {self.url}"

    async def call(self, method: str, path: str, query: Mapping[str, str | int] | None = None,
                   body: Any = None) -> JSON:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self.session.request(
                    method, self.url.rstrip("/") + _path(path, query), headers=headers,
                    json=body, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ControllerError(f"cannot reach {self.where}: {type(exc).__name__}: "
                                  f"{str(exc)[:200] or 'no answer'}") from None
        if not 200 <= status < 300:
            raise _problem(status, text, self.where)
        return _decode(text, self.where)

    async def close(self) -> None:
        await self.session.close()


@dataclass
class Proxied:
    """The controller's Service through the API server's service proxy."""

    kube: KubeClient
    namespace: str
    service: str
    port: str
    token: str | None

    @property
    def where(self) -> str:
        return f"the controller's Service {self.namespace}/{self.service} (through the API server)"

    async def call(self, method: str, path: str, query: Mapping[str, str | int] | None = None,
                   body: Any = None) -> JSON:
        proxy = (f"/api/v1/namespaces/{quote(self.namespace, safe='')}/services/"
                 f"{quote(self.service, safe='')}:{quote(self.port, safe='')}/proxy{path}")
        try:
            return await self.kube.request(
                method, proxy, query=dict(query or {}), body=body, timeout=TIMEOUT,
                headers={TOKEN_HEADER: self.token} if self.token else None)
        except ApiError as exc:
            if exc.status == 0:
                raise ControllerError(f"cannot reach the API server: {exc}") from None
            raise _problem(exc.status, exc.message, self.where) from None
        except ValueError:
            raise ControllerError(f"{self.where} did not answer JSON") from None

    async def close(self) -> None:
        await self.kube.close()


def _decode(text: str, where: str) -> JSON:
    try:
        doc = json.loads(text)
    except ValueError:
        raise ControllerError(f"{where} did not answer JSON (is it the lora-controller?)") from None
    if not isinstance(doc, dict):
        raise ControllerError(f"{where} answered something other than a JSON object")
    return doc


async def find_service(kube: KubeClient, *, namespace: str,
                       explicit: str | None) -> tuple[str, str, str]:
    """(namespace, name, port) of the controller's Service: `explicit` (NAMESPACE/NAME or NAME),
    else the one labelled as the chart labels it, preferring the current namespace."""
    if explicit:
        ns, _, name = explicit.rpartition("/")
        svc = await _get_service(kube, ns or namespace, name)
        return svc["metadata"]["namespace"], name, _port(svc)
    found = await _labelled(kube, namespace)
    if not found:
        raise ControllerError(
            f"no lora-controller Service found (label {SERVICE_LABEL}, in any namespace you may "
            f"list, or in {namespace}); give --controller-service NAMESPACE/NAME or "
            f"--controller-url")
    here = [s for s in found if s["metadata"]["namespace"] == namespace]
    if len(here) == 1 or len(found) == 1:
        svc = (here or found)[0]
        return svc["metadata"]["namespace"], svc["metadata"]["name"], _port(svc)
    names = ", ".join(f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in found)
    raise ControllerError(f"several lora-controller Services ({names}); choose one with "
                          f"--controller-service NAMESPACE/NAME")


async def _labelled(kube: KubeClient, namespace: str) -> list[JSON]:
    for where in (None, namespace):
        try:
            items = (await kube.list(SERVICES, namespace=where, label_selector=SERVICE_LABEL,
                                     timeout=30))["items"]
        except ApiError as exc:
            if exc.status in (401, 403):
                continue
            raise ControllerError(f"cannot list Services: {exc}") from None
        return list(items)
    return []


async def _get_service(kube: KubeClient, namespace: str, name: str) -> JSON:
    try:
        return await kube.get(SERVICES, name, namespace=namespace)
    except ApiError as exc:
        raise ControllerError(f"cannot read Service {namespace}/{name}: {exc}") from None


def _port(svc: JSON) -> str:
    ports = svc.get("spec", {}).get("ports") or []
    named = [p for p in ports if p.get("name") == "http"]
    chosen = (named or ports or [None])[0]
    if chosen is None:
        raise ControllerError(f"Service {svc['metadata']['name']} has no port")
    return str(chosen.get("name") or chosen["port"])
