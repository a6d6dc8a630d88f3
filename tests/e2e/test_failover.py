"""End to end: the router API answers through a leader change and a standby restart.

Two replicas with leader election behind one address (a round-robin balancer with readiness
probes, as the chart's Service), routers asking continuously while one resource's replicas change:
the leader is SIGKILLed, comes back as the standby, then the standby is SIGKILLed and restarted.
No router request fails, every answer agrees with what the pods served within one poll interval,
a restarted replica answers right from the moment it is taken in, and the standby takes over
writes within the lease duration of the kill.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_controller.devenv.cluster import Cluster, wait_all_ready
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.failover import FailoverConfig, run_failover

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(240)]

# Reading a pod and answering from that read takes a few milliseconds; this much more than one
# poll interval is allowed for it on a busy machine.
READ_SLACK = 0.5


async def test_routers_never_fail_through_a_failover(
    control_plane: ControlPlane, cluster: Cluster, tmp_path: Path
) -> None:
    config = FailoverConfig()
    run = await run_failover(control_plane, cluster, tmp_path, config)
    figures = run.figures()
    assert figures["router_errors"] == 0, figures["first_errors"]
    assert figures["router_requests"] > 500, figures
    assert len(figures["answers_by_replica"]) == 2, figures  # both replicas answered
    assert figures["stale_max_s"] <= config.poll_interval + READ_SLACK, figures
    assert figures["observed_age_max_s"] <= config.poll_interval + READ_SLACK, figures
    assert figures["fresh_answers"] > 0 and len(run.standby_ready_s) == 2, figures
    assert run.takeover_s <= config.lease_duration + READ_SLACK, figures
    # Both resources converged under the replica that leads at the end (writes went on).
    await wait_all_ready(cluster.kube, 2, namespace=cluster.namespace, timeout=60)
