"""A failover run: routers asking two controller replicas behind one address while replicas die.

Two `lora-controller run` processes with leader election share one namespace of simulated pods
and sit behind a `Balancer` (the chart's Service). Routers send `GetPodsForAdapter` continuously
while one resource's replicas change every `churn_period` seconds (so pods load and unload all
along), the leader is SIGKILLed (the standby must take the Lease over within the lease duration and
carry on the changes), the killed replica comes back as the standby, and then the standby is
SIGKILLed and restarted. Every answer is checked against what the pods really served
(`truth.py`'s timeline of their loads and unloads): `stale_max_s` is how far behind the pods the
most outdated answer was. Used by `tests/e2e/test_failover.py` and `bench/failover.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.balancer import Balancer
from lora_controller.devenv.cluster import Cluster, local_spec, wait_all_ready
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.truth import Answer, Timeline
from lora_controller.devenv.waiting import eventually
from lora_controller.kube.client import ApiError
from lora_controller.kube.resources import LEASES


@dataclass(frozen=True)
class FailoverConfig:
    pods: int = 6
    steady_adapters: int = 8  # a resource that stays as it is (2 replicas each)
    moving_adapters: int = 6  # a resource whose replicas go 1 -> 2 -> 1 ... every churn_period
    routers: int = 4
    request_interval: float = 0.02  # seconds between two requests of one router
    poll_interval: float = 2.0
    lease_duration: int = 4
    renew_deadline: float = 3.0
    retry_period: float = 0.5
    churn_period: float = 1.5
    phase: float = 4.0  # seconds of traffic between two steps
    down: float = 2.0  # seconds the killed standby stays down
    slow_pod_seconds: float = 1.5  # a pod of another model answering this late: a replica's
    # first reading of the namespace takes that long (it must not be taken in before)


@dataclass
class FailoverRun:
    """What happened, and the figures of it (`figures()`)."""

    config: FailoverConfig
    answers: list[Answer] = field(default_factory=list)
    fresh: list[Answer] = field(default_factory=list)  # a restarted replica's first answers
    errors: list[str] = field(default_factory=list)  # router requests that failed, why
    takeover_s: float = float("nan")
    standby_ready_s: list[float] = field(default_factory=list)  # restart -> in rotation
    stale_s: list[float] = field(default_factory=list)
    retried: int = 0
    served: dict[str, int] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        ages = [a.received - t for a in self.answers for t in a.observed if t is not None]
        return {
            "router_requests": len(self.answers) + len(self.errors),
            "router_errors": len(self.errors),
            "takeover_s": round(self.takeover_s, 3),
            "stale_max_s": round(max(self.stale_s, default=0.0), 3),
            "fresh_answers": len(self.fresh),
            "lease_duration_s": self.config.lease_duration,
            "poll_interval_s": self.config.poll_interval,
            "observed_age_max_s": round(max(ages, default=0.0), 3),
            "standby_ready_s": [round(s, 2) for s in self.standby_ready_s],
            "balancer_retries": self.retried,
            "answers_by_replica": self.served,
            "first_errors": self.errors[:5],
        }


class Replicas:
    """The controller replicas: start, kill, restart (a new process, address and identity)."""

    def __init__(self, cp: ControlPlane, cluster: Cluster, workdir: Path, config: FailoverConfig,
                 balancer: Balancer, lease: str) -> None:
        self.cp, self.cluster, self.workdir, self.config = cp, cluster, workdir, config
        self.balancer, self.lease = balancer, lease
        self.procs: dict[str, ControllerProcess] = {}
        self.identities: dict[str, str] = {}
        self._starts = 0

    def start(self, name: str) -> ControllerProcess:
        self._starts += 1
        identity = f"replica-{name}-{self._starts}"
        c = self.config
        proc = ControllerProcess(
            self.cp, namespace=self.cluster.namespace, store=self.workdir / "store",
            log_path=self.workdir / f"replica-{name}.log", poll_interval=c.poll_interval,
            log_level="info", extra=[
                "--leader-elect", "--identity", identity, "--lease-name", self.lease,
                "--lease-namespace", self.cluster.namespace,
                "--lease-duration", str(c.lease_duration), "--renew-deadline", f"{c.renew_deadline:g}",
                "--retry-period", f"{c.retry_period:g}"]).start()
        self.procs[name], self.identities[name] = proc, identity
        self.balancer.set_backend(name, proc.url)
        return proc

    async def holder(self) -> str:
        try:
            lease = await self.cluster.kube.get(LEASES, self.lease, namespace=self.cluster.namespace)
        except ApiError:
            return ""
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    async def leader(self) -> str:
        """The name of the replica holding the Lease (waits until one does)."""
        while True:
            holder = await self.holder()
            for name, identity in self.identities.items():
                if holder == identity:
                    return name
            await asyncio.sleep(0.05)

    def kill(self, name: str) -> None:
        self.procs[name].stop(signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.kill()


async def _route(session: aiohttp.ClientSession, url: str, names: list[str], namespace: str,
                 run: FailoverRun, stop: asyncio.Event, seed: int) -> None:
    """One router: GetPodsForAdapter for random adapters until `stop`, every answer kept."""
    rng = random.Random(seed)
    while not stop.is_set():
        name = rng.choice(names)
        sent = time.time()
        try:
            async with session.get(f"{url}/v1/adapters/{name}/pods?namespace={namespace}") as r:
                if r.status == 200:
                    run.answers.append(answer(name, sent, time.time(), await r.json()))
                else:
                    run.errors.append(f"{name}: {r.status} {(await r.text())[:200]}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            run.errors.append(f"{name}: {type(exc).__name__} {exc}"[:300])
        await asyncio.sleep(run.config.request_interval)


def answer(name: str, sent: float, received: float, body: dict[str, Any]) -> Answer:
    pods = body.get("pods") or []
    return Answer(name, sent, received, frozenset(p["name"] for p in pods),
                  tuple(_stamp(p.get("observedAt")) for p in pods))


def _stamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


async def _churn(cluster: Cluster, spec: Callable[[int], dict[str, Any]], period: float,
                 stop: asyncio.Event) -> None:
    """The moving resource's replicas: 2, 1, 2, 1, ... every `period` seconds."""
    replicas = 1
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), period)
        if not stop.is_set():
            replicas = 3 - replicas
            await cluster.apply("moving", spec(replicas))


async def _in_rotation(balancer: Balancer, name: str, since: float, timeout: float = 120) -> float:
    """Seconds from `since` (monotonic) until the balancer takes replica `name` in."""
    await eventually(lambda: balancer.ready(name), timeout=timeout, what=f"replica {name} ready")
    return time.monotonic() - since


async def _resources(cluster: Cluster, workdir: Path,
                     config: FailoverConfig) -> tuple[list[str], Callable[[int], dict[str, Any]]]:
    """The pods and the two resources' adapters; returns every adapter name and the moving
    resource's spec for a replica count."""
    steady = [f"steady-{i}" for i in range(config.steady_adapters)]
    moving = [f"moving-{i}" for i in range(config.moving_adapters)]
    steady_root = write_adapters(workdir / "adapters" / "steady", steady, shared_weights=True)
    moving_root = write_adapters(workdir / "adapters" / "moving", moving, shared_weights=True)
    await cluster.add_pods([f"vllm-{i}" for i in range(config.pods)], max_loras=4,
                           max_cpu_loras=2 * (config.steady_adapters + config.moving_adapters))
    if config.slow_pod_seconds > 0:
        slow = await cluster.add_pod("slow-other-model", model="other-model")
        slow.sim.config.faults.hang_rate, slow.sim.config.faults.hang_seconds = \
            1.0, config.slow_pod_seconds
    await cluster.apply("steady", local_spec(steady_root, deploymentConfig={"replicas": 2}))

    def moving_spec(replicas: int) -> dict[str, Any]:
        return local_spec(moving_root, deploymentConfig={"replicas": replicas})

    await cluster.apply("moving", moving_spec(1))
    return steady + moving, moving_spec


async def _kill_leader(run: FailoverRun, replicas: Replicas) -> str:
    """SIGKILL the leader; `takeover_s`: until the other replica holds the Lease."""
    leader = await replicas.leader()
    other = next(n for n in replicas.procs if n != leader)
    killed_at = time.monotonic()
    replicas.kill(leader)
    while True:
        if await replicas.holder() == replicas.identities[other]:
            break
        await asyncio.sleep(0.02)
    run.takeover_s = time.monotonic() - killed_at
    return leader


async def _restart(run: FailoverRun, replicas: Replicas, name: str, names: list[str]) -> None:
    """Start replica `name` again; once the balancer takes it in, ask it for every adapter
    (`fresh`): a replica in rotation must already answer as the pods serve."""
    since = time.monotonic()
    proc = replicas.start(name)
    run.standby_ready_s.append(await _in_rotation(replicas.balancer, name, since))
    ns = replicas.cluster.namespace
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for adapter in names:
            sent = time.time()
            async with session.get(f"{proc.url}/v1/adapters/{adapter}/pods?namespace={ns}") as r:
                if r.status != 200:
                    run.errors.append(f"fresh {name} {adapter}: {r.status} {await r.text()}"[:300])
                    continue
                run.fresh.append(answer(adapter, sent, time.time(), await r.json()))


async def _steps(run: FailoverRun, replicas: Replicas, names: list[str]) -> None:
    """Traffic, the leader killed, it comes back; traffic, the standby killed and restarted."""
    c = run.config
    await asyncio.sleep(c.phase)
    killed = await _kill_leader(run, replicas)
    await asyncio.sleep(c.phase)
    await _restart(run, replicas, killed, names)
    await asyncio.sleep(c.phase)
    leader = await replicas.leader()
    standby = next(n for n in replicas.procs if n != leader)
    replicas.kill(standby)
    await asyncio.sleep(c.down)
    await _restart(run, replicas, standby, names)
    await asyncio.sleep(c.phase)


async def run_failover(cp: ControlPlane, cluster: Cluster, workdir: Path,
                       config: FailoverConfig | None = None) -> FailoverRun:
    """The whole run (see the module's docstring); the replicas are killed at the end."""
    config = config or FailoverConfig()
    run = FailoverRun(config)
    names, moving_spec = await _resources(cluster, workdir, config)
    async with Balancer() as balancer:
        replicas = Replicas(cp, cluster, workdir, config, balancer, f"failover-{cluster.namespace}")
        try:
            for name in ("a", "b"):
                await replicas.start(name).wait_ready(timeout=120)
            await wait_all_ready(cluster.kube, 2, namespace=cluster.namespace, timeout=120)
            for name in ("a", "b"):
                await _in_rotation(balancer, name, time.monotonic())
            stop = asyncio.Event()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                tasks = [asyncio.create_task(_route(session, balancer.url, names, cluster.namespace,
                                                    run, stop, seed)) for seed in range(config.routers)]
                tasks.append(asyncio.create_task(_churn(cluster, moving_spec, config.churn_period, stop)))
                try:
                    await _steps(run, replicas, names)
                finally:
                    stop.set()
                    await asyncio.gather(*tasks)
        finally:
            replicas.stop_all()
        run.retried, run.served = balancer.stats.retried, dict(balancer.stats.served)
    timeline = Timeline.of({name: pod.sim for name, pod in cluster.pods.items()})
    run.stale_s = [timeline.lag(a) for a in [*run.answers, *run.fresh]]
    return run
