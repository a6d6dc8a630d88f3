"""The controller, as its own process, driving real vLLM servers registered as Pods.

Every claim is checked on the servers themselves: `/v1/models` of each real vLLM and real
completions through the pods the router API names.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.realvllm import lane
from tests.realvllm.conftest import Lane

pytestmark = pytest.mark.timeout(900)  # the first test also waits for the servers to start
JSON = dict[str, Any]


def holders(status: JSON, adapter: str) -> set[str]:
    return {pa["pod"] for pa in status.get("podAssignments", []) if adapter in pa["adapters"]}


def untrue_claims(status: JSON, listed: dict[str, list[str] | None]) -> list[str]:
    """Assignments a status claims that the real servers do not list (None: the server is down)."""
    return [f"{a} on {pa['pod']}" for pa in status.get("podAssignments", []) for a in pa["adapters"]
            if a not in (listed.get(pa["pod"]) or [])]


async def listed_or_down(real_lane: Lane) -> dict[str, list[str] | None]:
    async def one(pod: str) -> list[str] | None:
        try:
            return await lane.adapter_ids(real_lane.url(pod))
        except Exception:  # a killed server refuses connections
            return None

    names = list(real_lane.pods.pods)
    return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))


async def test_ready_only_when_real_servers_list_them_then_completions_and_finalizer(
    real_lane: Lane,
) -> None:
    names = ["lora-a", "lora-b", "lora-c"]
    await real_lane.apply("served", names, replicas=2)
    async with real_lane.removed_at_end("served"):
        deadline = time.monotonic() + 180
        while True:  # every Ready seen must already be true on the real servers
            status = await real_lane.status("served")
            if status.get("phase") == "Ready":
                listed = await real_lane.listed()
                assert not untrue_claims(status, dict(listed)), (status, listed)
                break
            assert time.monotonic() < deadline, (status, real_lane.controller.tail())
            await asyncio.sleep(0.1)
        assert sorted(status["loadedAdapters"]) == names and status["loadedCount"] == 3
        listed = await real_lane.listed()
        for name in names:
            on = {pod for pod, ids in listed.items() if name in ids}
            assert len(on) == 2 and on == holders(status, name), (name, listed, status)
            code, body = await real_lane.controller.get(
                f"/v1/adapters/{name}/pods?namespace={real_lane.namespace}")
            assert code == 200, body
            assert {p["name"] for p in body["pods"]} == on
            for pod in body["pods"]:
                assert pod["baseUrl"] == real_lane.url(pod["name"])
                code, answer = await lane.complete(pod["baseUrl"], name)
                assert code == 200 and answer["model"] == name and answer["choices"], answer
    listed = await real_lane.listed()
    assert not any(set(names) & set(ids) for ids in listed.values()), listed


async def test_lazy_adapter_loaded_on_demand_then_a_completion_through_it(real_lane: Lane) -> None:
    await real_lane.apply("lazy", ["lora-d"], loadOnStartup=False)
    async with real_lane.removed_at_end("lazy"):
        await real_lane.wait_status("lazy", lambda s: s.get("phase") == "Ready", what="Ready (placed)")
        assert not any("lora-d" in ids for ids in (await real_lane.listed()).values())
        code, body = await real_lane.controller.get(
            f"/v1/adapters/lora-d/pods?namespace={real_lane.namespace}&ensure=true")
        assert code == 200 and body["pods"], body
        for pod in body["pods"]:
            assert "lora-d" in await lane.adapter_ids(pod["baseUrl"])
            code, answer = await lane.complete(pod["baseUrl"], "lora-d")
            assert code == 200 and answer["model"] == "lora-d", answer
    assert not any("lora-d" in ids for ids in (await real_lane.listed()).values())


async def test_a_killed_server_is_reloaded_after_its_restart_and_status_never_lies(
    real_lane: Lane,
) -> None:
    names, victim, grace = ["lora-a", "lora-e"], "vllm-1", 5.0
    await real_lane.apply("everywhere", names, replicas=3)  # one replica per pod: none to spare
    async with real_lane.removed_at_end("everywhere"):
        def complete_everywhere(s: JSON) -> bool:
            return s.get("phase") == "Ready" and all(len(holders(s, n)) == 3 for n in names)

        await real_lane.wait_status("everywhere", complete_everywhere, what="Ready on all 3 pods")
        drift_before = lane.metric(await real_lane.controller_metrics(),
                                   "lora_controller_drift_corrections_total")
        seen: list[tuple[float, JSON, dict[str, list[str] | None]]] = []
        done = asyncio.Event()

        async def watch() -> None:  # status first, then the servers: a Ready must still be true
            while not done.is_set():
                at = time.monotonic()
                status = await real_lane.status("everywhere")
                seen.append((at, status, await listed_or_down(real_lane)))
                await asyncio.sleep(0.2)

        watcher = asyncio.create_task(watch())
        killed = time.monotonic()
        try:
            await real_lane.pods.kill(victim)
            await lane.wait_until(lambda: _seen_not_ready(seen, killed), timeout=60,
                                  what="the controller to notice the killed server")
            await real_lane.pods.start_again(victim)
            final = await real_lane.wait_status("everywhere", complete_everywhere, timeout=120,
                                                what="Ready again on all 3 pods")
        finally:
            done.set()
            await watcher
        assert set(names) <= set(await lane.adapter_ids(real_lane.url(victim))), "not reloaded"
        lies = [(round(at - killed, 1), untrue_claims(s, listed)) for at, s, listed in seen
                if at > killed + grace and s.get("phase") == "Ready" and untrue_claims(s, listed)]
        assert not lies, f"Ready while a desired replica was missing: {lies}"
        assert final["observedGeneration"] == 1
        drift = lane.metric(await real_lane.controller_metrics(),
                            "lora_controller_drift_corrections_total") - drift_before
        assert drift >= len(names), f"drift corrections counted: {drift}"


async def _seen_not_ready(seen: list[tuple[float, JSON, Any]], since: float) -> bool:
    return any(at > since and s.get("phase") != "Ready" for at, s, _ in seen)
