"""`kubectl lora plan -f FILE` (POST /v1/plan): the dry run equals what the controller then does
when FILE is applied, nothing is applied by the plan, and bad input gets a clear 4xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from lora_controller.api.types import API_VERSION
from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.kubectl import kubectl
from lora_controller.server.plan import MAX_BODY
from tests.kubectl.plugin import kubectl_lora
from tests.view.world import TOKEN, World, demo_world, until

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]
Action = tuple[str, str, str]  # (pod, load | unload, adapter)


@pytest.fixture(scope="module")
async def world(control_plane: ControlPlane,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with demo_world(control_plane, tmp_path_factory.mktemp("plan"), token=TOKEN) as w:
        yield w


def actions_since(world: World, marks: dict[str, int]) -> set[Action]:
    """Successful loads and unloads each simulated pod saw after `marks` (its log's length)."""
    return {(pod, e.action, e.name) for pod, p in world.cluster.pods.items()
            for e in p.sim.load_log[marks[pod]:] if e.status == 200}


def planned(answer: dict[str, Any]) -> set[Action]:
    (ns,) = answer["namespaces"]
    return {(p["pod"], "load", a["adapter"]) for p in ns["pods"] for a in p["loads"]} | {
        (p["pod"], "unload", a["adapter"]) for p in ns["pods"] for a in p["unloads"]}


async def plugin(world: World, *args: str, token: bool = True) -> tuple[int, str, str]:
    env = {"LORA_ROUTER_TOKEN": TOKEN} if token else {"LORA_ROUTER_TOKEN": ""}
    proc = await asyncio.to_thread(kubectl_lora, *args, kubeconfig=world.kubeconfig,
                                   url=world.ctl.url, env=env)
    return proc.returncode, proc.stdout, proc.stderr


async def test_the_plan_is_what_applying_the_file_does(world: World, tmp_path: Path,
                                                       control_plane: ControlPlane) -> None:
    """A new resource of higher priority that needs more slots than are free, and a changed one
    (fewer replicas): loads, unloads and preemptions, planned, then done."""
    urgent = ["urgent-0", "urgent-1", "urgent-2", "urgent-3"]
    write_adapters(tmp_path / "urgent", urgent, base_model="tiny-llama")
    local = await world.cluster.cr("local-adapters")
    changed = {"apiVersion": API_VERSION, "kind": "LoraAdapter",
               "metadata": {"name": "local-adapters"},
               "spec": {**local["spec"], "deploymentConfig": {
                   **local["spec"]["deploymentConfig"], "replicas": 1}}}
    new = {"apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": "urgent"},
           "spec": {"baseModel": "tiny-llama",
                    "adapterSource": {"type": "local", "repository": str(tmp_path / "urgent")},
                    "deploymentConfig": {"podSelector": {"matchLabels": {"lora-enabled": "true"}}},
                    "schedulingConfig": {"priority": 1000}}}
    file = tmp_path / "change.yaml"
    file.write_text(yaml.safe_dump_all([new, changed], sort_keys=False))
    marks = {pod: len(p.sim.load_log) for pod, p in world.cluster.pods.items()}

    code, out, err = await plugin(world, "plan", "-f", str(file), "-n", world.namespace)
    assert code == 0, err
    assert "12 load(s), 6 unload(s), 3 preemption(s)" in out, out
    assert "(nothing was applied)" in out and "preempt" in out
    code, text, err = await plugin(world, "plan", "-f", str(file), "-n", world.namespace,
                                   "-o", "json")
    assert code == 0, err
    answer = json.loads(text)
    plan = planned(answer)
    assert {a for _, verb, a in plan if verb == "load"} == set(urgent)
    assert {a for _, verb, a in plan if verb == "unload"} == {"chat-lora", "sql-lora",
                                                               "summary-lora"}
    victims = {(p["pod"], v["adapter"]) for p in answer["namespaces"][0]["pods"]
               for v in p["preemptions"]}
    assert len(victims) == 3 and all(v["by"]["loraAdapter"] == "urgent"
                                     for p in answer["namespaces"][0]["pods"]
                                     for v in p["preemptions"])
    # Nothing was applied: no new resource, no action on any pod.
    assert kubectl(control_plane, "get", "loraadapter", "urgent", "-n", world.namespace,
                   check=False).returncode != 0
    assert (await world.cluster.cr("local-adapters"))["spec"] == local["spec"]
    assert actions_since(world, marks) == set()

    await asyncio.to_thread(kubectl, control_plane, "apply", "-n", world.namespace, "-f",
                            str(file))
    await until(lambda: actions_since(world, marks) >= plan, timeout=60,
                what="the planned actions")
    await asyncio.sleep(3)  # and nothing more after them
    assert actions_since(world, marks) == plan


async def test_the_file_is_checked_by_the_api_server_then_by_the_controller(
        world: World, tmp_path: Path) -> None:
    typo = {"apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": "typo"},
            "spec": {"baseModel": "tiny-llama", "adapterSource": {"type": "local",
                                                                   "repository": "/x"},
                     "deploymentConfig": {"replcas": 2}}}
    file = tmp_path / "typo.json"
    file.write_text(json.dumps(typo))
    code, _, err = await plugin(world, "plan", "-f", str(file), "-n", world.namespace)
    assert code == 1 and "refused by the API server" in err and "replcas" in err, err
    code, _, err = await plugin(world, "plan", "-f", str(file), "-n", world.namespace,
                                "--validate=false")
    assert code == 1 and "InvalidLoraAdapter" in err and "spec.deploymentConfig.replcas" in err
    code, _, err = await plugin(world, "plan", "-f", str(file), "-n", world.namespace,
                                "--validate=false", token=False)
    assert code == 1 and "401" in err and "router token" in err
    secret = tmp_path / "secret.yaml"
    secret.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
    code, _, err = await plugin(world, "plan", "-f", str(secret), "-n", world.namespace)
    assert code == 1 and "skipped" in err and "no LoraAdapter in" in err


def _adapter(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "LoraAdapter", "metadata": {"name": name},
            "spec": {"baseModel": "tiny-llama",
                     "adapterSource": {"type": "local", "repository": "/nowhere"}, **spec}}


@pytest.mark.parametrize(("body", "headers", "status", "reason"), [
    (b"{not json", {}, 400, "InvalidPlan"),
    (json.dumps({"kind": "Pod"}).encode(), {}, 400, "InvalidPlan"),
    (json.dumps({"kind": "List", "items": []}).encode(), {}, 400, "InvalidPlan"),
    (json.dumps({"kind": "List", "items": [_adapter("a"), _adapter("a")]}).encode(), {}, 400,
     "InvalidPlan"),
    (json.dumps(_adapter("Bad_Name")).encode(), {}, 400, "InvalidPlan"),
    (json.dumps({**_adapter("a"), "spec": {"baseModel": ""}}).encode(), {}, 422,
     "InvalidLoraAdapter"),
    (json.dumps(_adapter("a", schedulingConfig={"priority": -1})).encode(), {}, 422,
     "InvalidLoraAdapter"),
    (b" " * (MAX_BODY + 1), {}, 413, "RequestTooLarge"),
    (json.dumps(_adapter("a")).encode(), {"Content-Type": "text/plain"}, 415,
     "UnsupportedMediaType"),
    (json.dumps({**_adapter("a"), "metadata": {"name": "a", "namespace": "elsewhere"}}).encode(),
     {}, 404, "NamespaceNotServed"),
    (json.dumps(_adapter("a")).encode(), {"Authorization": "Bearer wrong"}, 401, "Unauthorized"),
])
async def test_bad_plan_bodies_get_a_clear_4xx(world: World, body: bytes, headers: dict[str, str],
                                              status: int, reason: str) -> None:
    sent = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}", **headers}
    async with aiohttp.ClientSession() as s, s.post(
            f"{world.ctl.url}/v1/plan?namespace={world.namespace}"
            if "elsewhere" not in body.decode(errors="replace") else f"{world.ctl.url}/v1/plan",
            data=body, headers=sent) as r:
        answer = await r.json()
    assert r.status == status and answer["error"]["reason"] == reason, answer
    assert answer["error"]["message"]


async def test_a_plan_through_the_api_server_token_header(world: World) -> None:
    """The token also comes as X-Lora-Router-Token (what the plugin sends through the service
    proxy, where the API server takes the Authorization header)."""
    async with aiohttp.ClientSession() as s, s.post(
            f"{world.ctl.url}/v1/plan", json={**_adapter("new-one"),
                                              "metadata": {"name": "new-one",
                                                           "namespace": world.namespace}},
            headers={"X-Lora-Router-Token": TOKEN}) as r:
        answer = await r.json()
    assert r.status == 200, answer
    (ns,) = answer["namespaces"]
    assert ns["namespace"] == world.namespace and answer["applied"] is False
    assert [p["loraAdapter"] for p in ns["sourceProblems"]] == ["new-one"], ns
