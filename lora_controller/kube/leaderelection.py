"""Leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection, LeaseLock).

- A candidate acquires the Lease when it is free, released, or expired. Expiry is judged from the
  *local* time at which this candidate last saw the Lease's record change, never from timestamps
  written by another machine's clock. A candidate watches the Lease (beyond client-go, which only
  polls it every retry period), so it sees each renewal as it happens and tries again the moment
  the last one runs out: a crashed leader is replaced within the lease duration of the crash.
- Every write is an optimistic update carrying the resourceVersion just read: two candidates can
  never both win the same round.
- The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it stops leading.
  `is_leader` also turns false on its own once `renew_deadline` has passed since the last successful
  renewal, even while a renewal request hangs, so writers that check it stop at once; the Lease itself
  stays valid for `lease_duration` > `renew_deadline`, so no other candidate can lead before then.
- On shutdown the leader releases the Lease (empty holder), so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Gauge

from lora_controller.core.clock import Clock, RealClock
from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.resources import LEASES

JSON = dict[str, Any]
log = structlog.get_logger(__name__)

IS_LEADER = Gauge(
    "leader_election_master_status",
    "1 when this replica holds the leader Lease, 0 otherwise (controller-runtime's name).", ["name"],
)

JITTER = 1.2


def _micro_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    lease_duration: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int

    @classmethod
    def from_lease(cls, lease: JSON) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )


class LeaderElector:
    """Campaign for a Lease and keep it; report leadership through callbacks and `is_leader`."""

    def __init__(
        self,
        client: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        clock: Clock | None = None,
        request_timeout: float | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period * JITTER:
            raise ValueError("need lease_duration > renew_deadline > retry_period * 1.2")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.clock = clock or RealClock()
        self.request_timeout = request_timeout or retry_period * 2
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._leading = False
        self._last_renew = float("-inf")
        self._known_leader = ""
        self._log = log.bind(lease=f"{namespace}/{name}", identity=identity)
        IS_LEADER.labels(name).set(0)

    # -- state --------------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        """True only while the last successful renewal is younger than the renew deadline."""
        return self._leading and self.clock.monotonic() - self._last_renew < self.renew_deadline

    @property
    def leader(self) -> str:
        return self._known_leader

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Acquire, then renew until leadership is lost (returns) or the task is cancelled."""
        try:
            await self._acquire()
            await self._renew_loop()
        finally:
            if self._leading:
                self._stop_leading()

    async def _acquire(self) -> None:
        follower = asyncio.create_task(self._follow(), name=f"lease-watch:{self.name}")
        try:
            while True:
                if await self._try_acquire_or_renew():
                    self._start_leading()
                    return
                await self.clock.sleep(self._until_next_try())
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    def _until_next_try(self) -> float:
        """A retry period (with jitter), or less when the Lease expires sooner: a candidate that
        saw the leader's last renewal tries again the moment that renewal runs out."""
        retry = self.retry_period * (1 + (JITTER - 1) * random.random())
        record = self._observed
        if record is None or not record.holder:
            return retry
        expires_in = self._observed_at + max(record.lease_duration, 1) - self.clock.monotonic()
        return max(0.01, min(retry, expires_in + 0.01))

    async def _follow(self) -> None:
        """While not leading, watch the Lease, so that each renewal of the leader is seen when it
        happens and not up to a retry period later: expiry is still judged from the local time of
        the last change seen (never from another machine's clock), and with the renewal seen at
        once a crashed leader is replaced within the lease duration of its last renewal."""
        while True:
            try:
                async for event in self.client.watch(
                        LEASES, namespace=self.namespace, resource_version="",
                        field_selector=f"metadata.name={self.name}",
                        timeout_seconds=int(60 + 60 * random.random())):
                    if event.type in ("ADDED", "MODIFIED"):
                        self._observe(LeaseRecord.from_lease(event.object))
            except ApiError as exc:
                if exc.status in (401, 403):  # polling alone still sees expiry, later
                    self._log.warning("cannot watch the lease", error=exc.message[:300])
                    return
                self._log.debug("lease watch ended", status=exc.status, reason=exc.reason)
                await self.clock.sleep(self.retry_period)

    async def _renew_loop(self) -> None:
        while True:
            deadline = self.clock.monotonic() + self.renew_deadline
            renewed = False
            while self.clock.monotonic() < deadline:
                remaining = deadline - self.clock.monotonic()
                try:
                    async with asyncio.timeout(max(0.01, min(remaining, self.request_timeout))):
                        renewed = await self._try_acquire_or_renew()
                except TimeoutError:
                    renewed = False
                if renewed:
                    break
                await self.clock.sleep(min(self.retry_period, max(0.0, deadline - self.clock.monotonic())))
            if not renewed:
                self._log.warning("failed to renew the lease within the renew deadline; stepping down")
                return
            await self.clock.sleep(self.retry_period)

    def _start_leading(self) -> None:
        self._leading = True
        IS_LEADER.labels(self.name).set(1)
        self._log.info("became leader")
        if self.on_started_leading:
            self.on_started_leading()

    def _stop_leading(self) -> None:
        self._leading = False
        IS_LEADER.labels(self.name).set(0)
        self._log.info("stopped leading")
        if self.on_stopped_leading:
            self.on_stopped_leading()

    def _observe(self, record: LeaseRecord) -> None:
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock.monotonic()
        if record.holder and record.holder != self._known_leader:
            self._known_leader = record.holder
            if self.on_new_leader:
                self.on_new_leader(record.holder)

    async def _try_acquire_or_renew(self) -> bool:
        now = self.clock.now()
        try:
            lease = await self.client.get(LEASES, self.name, namespace=self.namespace)
        except ApiError as exc:
            if not exc.not_found:
                self._log.debug("cannot read the lease", error=str(exc))
                return False
            return await self._create(now)
        record = LeaseRecord.from_lease(lease)
        self._observe(record)
        held_by_other = record.holder not in ("", self.identity)
        expired = self._observed_at + max(record.lease_duration, 1) <= self.clock.monotonic()
        if held_by_other and not expired:
            return False
        spec = dict(lease.get("spec") or {})
        if record.holder != self.identity:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = record.transitions + (1 if record.holder else 0)
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = int(self.lease_duration)
        spec["renewTime"] = _micro_time(now)
        lease["spec"] = spec
        try:
            updated = await self.client.replace(LEASES, self.name, lease, namespace=self.namespace)
        except ApiError as exc:
            self._log.debug("lease update lost", status=exc.status, reason=exc.reason)
            return False
        self._observe(LeaseRecord.from_lease(updated))
        self._last_renew = self.clock.monotonic()
        return True

    async def _create(self, now: datetime) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self.client.create(LEASES, body, namespace=self.namespace)
        except ApiError as exc:
            self._log.debug("lease create lost", status=exc.status, reason=exc.reason)
            return False
        self._observe(LeaseRecord.from_lease(created))
        self._last_renew = self.clock.monotonic()
        return True

    async def release(self) -> None:
        """Give the Lease up (if this candidate holds it) so that a standby takes over at once.

        Called on shutdown, after `run` has ended or been cancelled.
        """
        if self._leading:
            self._stop_leading()
        with contextlib.suppress(ApiError, TimeoutError):
            async with asyncio.timeout(self.request_timeout):
                lease = await self.client.get(LEASES, self.name, namespace=self.namespace)
                if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                    return
                spec = dict(lease["spec"])
                spec.update(holderIdentity="", leaseDurationSeconds=1,
                            renewTime=_micro_time(self.clock.now()))
                lease["spec"] = spec
                await self.client.replace(LEASES, self.name, lease, namespace=self.namespace)
                self._log.info("released the lease")
