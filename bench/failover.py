"""Benchmark: the router API through a failover (the scenario of tests/e2e/test_failover.py).

Two controller replicas with leader election behind one round-robin address with readiness probes
(as the chart's Service), simulated vLLM pods, one resource whose replicas change every
`--churn-period` seconds, routers sending `GetPodsForAdapter` continuously; the leader is SIGKILLed
(it comes back as the standby), then the standby is SIGKILLed and restarted. Every answer is
checked against what the pods served (their load logs). Last line: one JSON object with
`router_requests`, `router_errors`, `takeover_s` (kill -> the standby holds the Lease),
`stale_max_s` (how far behind the pods the most outdated answer was), and the run's settings.

    python bench/failover.py [--routers 4] [--poll-interval 2] [--lease-duration 4] [--phase 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math

from lora_controller.devenv.failover import FailoverConfig, run_failover
from lora_controller.devenv.local import LocalCluster


async def run(config: FailoverConfig) -> dict[str, object]:
    async with LocalCluster() as world:
        cluster = await world.namespace("failover")
        result = await run_failover(world.cp, cluster, world.workdir, config)
        figures = result.figures()
        worst = max(result.stale_s, default=0.0)
        figures["wrong_answers"] = sum(1 for s in result.stale_s if math.isinf(s))
        figures["stale_max_s"] = None if math.isinf(worst) else figures["stale_max_s"]
        return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--routers", type=int, default=4)
    p.add_argument("--request-interval", type=float, default=0.02)
    p.add_argument("--poll-interval", type=float, default=2.0)
    p.add_argument("--lease-duration", type=int, default=4)
    p.add_argument("--renew-deadline", type=float, default=3.0)
    p.add_argument("--retry-period", type=float, default=0.5)
    p.add_argument("--churn-period", type=float, default=1.5)
    p.add_argument("--phase", type=float, default=4.0)
    p.add_argument("--pods", type=int, default=6)
    a = p.parse_args()
    config = FailoverConfig(
        pods=a.pods, routers=a.routers, request_interval=a.request_interval,
        poll_interval=a.poll_interval, lease_duration=a.lease_duration,
        renew_deadline=a.renew_deadline, retry_period=a.retry_period, churn_period=a.churn_period,
        phase=a.phase)
    print(json.dumps(asyncio.run(run(config))))


if __name__ == "__main__":
    main()
