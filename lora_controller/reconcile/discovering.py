"""Discovery with memory: what each LoraAdapter's source offers, cached, retried, never lost on a blip.

Listing a source is network I/O (HuggingFace, S3), so a resource's discovery is reused until its
spec changes (generation), its credentials Secret changes, or `ttl` passes. A failure does not throw
away what worked: while the spec is unchanged, the last good discovery keeps the adapters served and
the failure is reported beside it (Degraded); failures are retried with exponential backoff.

This is also the failure boundary of one resource: whatever goes wrong while reading its source
(a library raising something unexpected included) becomes that resource's problem, with a message
that names no secret, and the other resources of the namespace go on (`discover_all`).
"""

from __future__ import annotations

import asyncio
import base64
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from lora_controller.api.types import LoraAdapter
from lora_controller.core.clock import Clock, RealClock
from lora_controller.reconcile.refs import CrRef
from lora_controller.reconcile.status import SourceProblem
from lora_controller.sources.credentials import SourceCredentials, credentials_from_secret
from lora_controller.sources.discovery import discover
from lora_controller.sources.errors import SourceError, redact
from lora_controller.sources.model import Discovery, SourceOptions

JSON = dict[str, Any]
log = structlog.get_logger(__name__)

SecretLookup = Callable[[str, str], JSON | None]
DiscoverFn = Callable[..., Awaitable[Discovery]]


@dataclass
class DiscoveryState:
    """The usable discovery of one resource (possibly an older one) and the current problem, if any."""

    key: tuple[int, str]
    discovery: Discovery | None
    problem: SourceProblem | None
    at: float
    failures: int = 0
    credentials: SourceCredentials | None = None

    @property
    def retry_in(self) -> float:
        """Backoff before the next attempt after `failures` failures: 5 s doubling to 5 min."""
        return min(5.0 * 2 ** max(self.failures - 1, 0), 300.0) if self.failures else 0.0


def secret_data(secret: JSON | None) -> dict[str, str] | None:
    """A Secret's data, base64-decoded (stringData never comes back from the API server)."""
    if secret is None:
        return None
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
    return out


class DiscoveryCache:
    def __init__(
        self,
        *,
        secrets: SecretLookup,
        ttl: float = 300.0,
        options: SourceOptions | None = None,
        clock: Clock | None = None,
        discover_fn: DiscoverFn = discover,
    ) -> None:
        self.secrets = secrets
        self.ttl = ttl
        self.options = options or SourceOptions()
        self.clock = clock or RealClock()
        self.discover_fn = discover_fn
        self._states: dict[CrRef, DiscoveryState] = {}

    def forget(self, ref: CrRef) -> None:
        self._states.pop(ref, None)

    def peek(self, ref: CrRef) -> DiscoveryState | None:
        return self._states.get(ref)

    def _secret_version(self, cr: LoraAdapter) -> str:
        ref = cr.spec.credentials_secret_ref
        if ref is None:
            return ""
        secret = self.secrets(cr.metadata.namespace, ref.name)
        return "" if secret is None else str(secret.get("metadata", {}).get("resourceVersion", "?"))

    async def get(self, cr: LoraAdapter, *, force: bool = False) -> DiscoveryState:
        key = (cr.metadata.generation, self._secret_version(cr))
        now = self.clock.monotonic()
        state = self._states.get(CrRef.of(cr))
        if state is not None and state.key == key and not force:
            age = now - state.at
            if state.problem is None and age < self.ttl:
                return state
            if state.problem is not None and age < state.retry_in:
                return state
        return await self._refresh(cr, key, state, now)

    async def _refresh(
        self, cr: LoraAdapter, key: tuple[int, str], state: DiscoveryState | None, now: float
    ) -> DiscoveryState:
        credentials: SourceCredentials | None = None
        try:
            credentials = self._credentials(cr)
            found = await self.discover_fn(
                cr.spec, namespace=cr.metadata.namespace, credentials=credentials,
                options=self.options,
            )
        except SourceError as exc:
            return self._failed(cr, key, state, now, SourceProblem(exc.reason, exc.message))
        except Exception as exc:  # the boundary: one resource's bug never stops the others
            secrets = credentials.secrets() if credentials else ()
            message = redact(f"{type(exc).__name__}: {exc}", secrets)[:300]
            log.error("discovery failed unexpectedly", cr=str(CrRef.of(cr)), error=message,
                      where="".join(traceback.format_tb(exc.__traceback__)[-3:]))
            return self._failed(cr, key, state, now, SourceProblem(
                "InternalError", f"reading the source failed unexpectedly ({message}); the "
                "controller's log has the details"))
        new = DiscoveryState(key, found, None, now, 0, credentials)
        self._states[CrRef.of(cr)] = new
        return new

    def _failed(self, cr: LoraAdapter, key: tuple[int, str], state: DiscoveryState | None,
                now: float, problem: SourceProblem) -> DiscoveryState:
        """Keep the last good discovery while the spec is unchanged; back off the next try."""
        same_spec = state is not None and state.key[0] == key[0]
        failures = (state.failures + 1) if state is not None else 1
        kept = state.discovery if (state is not None and same_spec) else None
        new = DiscoveryState(key, kept, problem, now, failures,
                             state.credentials if state and same_spec else None)
        self._states[CrRef.of(cr)] = new
        log.info("discovery failed", cr=str(CrRef.of(cr)), reason=problem.reason,
                 kept_previous=kept is not None, retry_in_s=new.retry_in)
        return new

    def _credentials(self, cr: LoraAdapter) -> SourceCredentials | None:
        ref = cr.spec.credentials_secret_ref
        if ref is None:
            return None
        data = secret_data(self.secrets(cr.metadata.namespace, ref.name))
        return credentials_from_secret(
            data, ref=ref, source_type=cr.spec.adapter_source.type, namespace=cr.metadata.namespace
        )


async def discover_all(cache: DiscoveryCache, live: Sequence[LoraAdapter], *,
                       concurrency: int = 16) -> dict[CrRef, DiscoveryState]:
    """The discover stage: every live resource's discovery, `concurrency` sources at a time."""
    sem = asyncio.Semaphore(concurrency)
    out: dict[CrRef, DiscoveryState] = {}

    async def one(cr: LoraAdapter) -> None:
        async with sem:
            out[CrRef.of(cr)] = await cache.get(cr)

    await asyncio.gather(*(one(cr) for cr in live))
    return out
