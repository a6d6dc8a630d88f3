"""Leader election on a real Lease: one leader at a time, takeover, stepping down, release."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.kube.client import KubeClient
from lora_controller.kube.leaderelection import LeaderElector
from lora_controller.kube.resources import LEASES, NAMESPACES

pytestmark = pytest.mark.k8s

FAST = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.4}


def elector(kube: KubeClient, ns: str, identity: str, lease: str, log: list[str]) -> LeaderElector:
    return LeaderElector(
        kube, name=lease, namespace=ns, identity=identity,
        on_started_leading=lambda: log.append(f"start:{identity}"),
        on_stopped_leading=lambda: log.append(f"stop:{identity}"),
        **FAST,
    )


async def sample_leaders(electors: list[LeaderElector], seconds: float) -> list[int]:
    """How many electors claim leadership, sampled every 20 ms."""
    counts: list[int] = []
    end = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < end:
        counts.append(sum(e.is_leader for e in electors))
        await asyncio.sleep(0.02)
    return counts


async def test_exactly_one_leader_and_takeover_after_a_crash(kube: KubeClient, namespace: str) -> None:
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    log: list[str] = []
    a, b = elector(kube, namespace, "a", lease, log), elector(kube, namespace, "b", lease, log)
    tasks = {e.identity: asyncio.create_task(e.run()) for e in (a, b)}
    try:
        counts = await sample_leaders([a, b], 4.0)
        assert max(counts) == 1, "never two leaders"
        assert counts[-1] == 1, "someone leads"
        leader, standby = (a, b) if a.is_leader else (b, a)
        # Crash the leader: cancel without releasing the Lease.
        tasks[leader.identity].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[leader.identity]
        crashed_at = asyncio.get_running_loop().time()
        while not standby.is_leader:
            assert asyncio.get_running_loop().time() - crashed_at < FAST["lease_duration"] + 2 * FAST["retry_period"] + 1.0, \
                "the standby must take over within the lease duration"
            await asyncio.sleep(0.02)
        took = asyncio.get_running_loop().time() - crashed_at
        assert took >= 1.0, f"took over after {took:.2f}s, before the lease could expire"
        got = await kube.get(LEASES, lease, namespace=namespace)
        assert got["spec"]["holderIdentity"] == standby.identity
        assert got["spec"]["leaseTransitions"] == 1
    finally:
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_a_crashed_leader_is_replaced_within_the_lease_duration(
        kube: KubeClient, namespace: str) -> None:
    """The standby watches the Lease: it sees the last renewal when it happens and tries again the
    moment it runs out, not up to two retry periods later (polling: one to see the renewal, one
    to try again)."""
    timing = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 1.5}
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    a, b = (LeaderElector(kube, name=lease, namespace=namespace, identity=i, **timing)
            for i in ("a", "b"))
    tasks = {e.identity: asyncio.create_task(e.run()) for e in (a, b)}
    loop = asyncio.get_running_loop()
    try:
        while not (a.is_leader or b.is_leader):
            await asyncio.sleep(0.01)
        leader, standby = (a, b) if a.is_leader else (b, a)
        renewed = leader._last_renew
        while leader._last_renew == renewed:  # crash just after a renewal: the worst case
            await asyncio.sleep(0.005)
        tasks[leader.identity].cancel()
        crashed_at = loop.time()
        while not standby.is_leader:
            await asyncio.sleep(0.01)
        took = loop.time() - crashed_at
        assert timing["lease_duration"] - 0.3 <= took <= timing["lease_duration"] + 0.5, took
    finally:
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_release_on_shutdown_hands_over_at_once(kube: KubeClient, namespace: str) -> None:
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    log: list[str] = []
    a = elector(kube, namespace, "a", lease, log)
    ta = asyncio.create_task(a.run())
    while not a.is_leader:
        await asyncio.sleep(0.02)
    b = elector(kube, namespace, "b", lease, log)
    tb = asyncio.create_task(b.run())
    await asyncio.sleep(0.5)
    assert not b.is_leader
    ta.cancel()
    await asyncio.gather(ta, return_exceptions=True)
    await a.release()
    released_at = asyncio.get_running_loop().time()
    while not b.is_leader:
        await asyncio.sleep(0.02)
    assert asyncio.get_running_loop().time() - released_at < 1.5, "a released lease is taken at once"
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)
    assert "start:a" in log and "stop:a" in log and "start:b" in log


async def test_leader_that_cannot_renew_stops_acting(private_control_plane: ControlPlane) -> None:
    cp = private_control_plane
    kube = await KubeClient.from_config(kubeconfig=str(cp.kubeconfig), timeout=1)
    ns = f"t-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    log: list[str] = []
    a = elector(kube, ns, "a", "lease", log)
    task = asyncio.create_task(a.run())
    try:
        while not a.is_leader:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(cp.stop_apiserver)
        stopped_at = asyncio.get_running_loop().time()
        while a.is_leader:
            await asyncio.sleep(0.01)
        lost_after = asyncio.get_running_loop().time() - stopped_at
        assert lost_after <= FAST["renew_deadline"] + 0.2, f"still leading {lost_after:.2f}s after losing the API"
        await asyncio.wait_for(task, timeout=FAST["renew_deadline"] + 3)
        assert log == ["start:a", "stop:a"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(cp.start_apiserver)
        await kube.close()
