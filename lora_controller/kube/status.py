"""The status writer: server-side apply on the /status subresource, only when something changed.

One fixed field manager owns the status, so fields the controller stops setting are removed by the
API server itself (no hand-written nulls), and `force` settles ownership left by older writers.
A write is skipped when the cached object already carries an equal status: a steady cluster causes
no writes. Transient failures (conflicts, 429, 5xx, timeouts) are retried with a short backoff.
Whether this replica may write at all is its caller's decision (the reconciler's leader writer).
"""

from __future__ import annotations

from typing import Any

import structlog

from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube.client import APPLY_PATCH, ApiError, KubeClient
from lora_controller.kube.resources import ResourceKind

JSON = dict[str, Any]
log = structlog.get_logger(__name__)

FIELD_MANAGER = "lora-controller"


class StatusWriter:
    def __init__(
        self,
        client: KubeClient,
        kind: ResourceKind,
        *,
        field_manager: str = FIELD_MANAGER,
        clock: Clock | None = None,
        attempts: int = 4,
    ) -> None:
        self.client = client
        self.kind = kind
        self.field_manager = field_manager
        self.clock = clock or RealClock()
        self.attempts = attempts
        self.writes = 0

    async def write(self, current: JSON, status: JSON) -> JSON | None:
        """Apply `status` to the object `current` (as cached); returns the updated object or None."""
        if current.get("status") == status:
            return None
        meta = current.get("metadata") or {}
        body = {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
            "status": status,
        }
        delay = 0.1
        for attempt in range(1, self.attempts + 1):
            try:
                updated = await self.client.patch(
                    self.kind, meta["name"], body, namespace=meta.get("namespace"),
                    subresource="status", content_type=APPLY_PATCH,
                    field_manager=self.field_manager, force=True,
                )
                self.writes += 1
                return updated
            except ApiError as exc:
                if exc.not_found or not exc.retryable or attempt == self.attempts:
                    raise
                log.debug("status write retried", object=meta.get("name"), status=exc.status)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 2.0)
        return None
