"""`kubectl lora status` and `why` through the real kubectl (which finds the installed
`kubectl-lora`), against the controller process and the real API server, on the demo's world."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.kubectl import kubectl
from tests.kubectl.plugin import kubectl_lora
from tests.view.world import World, demo_world

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
async def world(control_plane: ControlPlane,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with demo_world(control_plane, tmp_path_factory.mktemp("plugin")) as w:
        yield w


async def run(world: World, *args: str, url: bool = True, kubeconfig: Path | None = None,
              ) -> tuple[int, str, str]:
    """`kubectl lora ARGS` in a thread: the event loop serves the simulated pods meanwhile."""
    proc = await asyncio.to_thread(kubectl_lora, *args, kubeconfig=kubeconfig or world.kubeconfig,
                                   url=world.ctl.url if url else None)
    return proc.returncode, proc.stdout, proc.stderr


def served(world: World) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for pod in world.cluster.pods:
        for adapter in world.cluster.loaded(pod):
            out.setdefault(adapter, set()).add(pod)
    return out


def table(text: str) -> list[dict[str, str]]:
    """A kubectl-style table (columns at least three spaces apart) as dicts."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    head = lines[0]
    starts = [i for i, ch in enumerate(head) if ch != " " and (i == 0 or head[i - 2:i] == "  ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    heads = [head[a:b].strip() for a, b in bounds]
    return [{h: ln[a:b].strip() for h, (a, b) in zip(heads, bounds, strict=True)} for ln in lines[1:]]


async def test_status_says_where_each_adapter_is_confirmed_and_why_not_elsewhere(
        world: World) -> None:
    code, out, err = await run(world, "status", "-n", world.namespace)
    assert code == 0, err
    rows = {r["ADAPTER"]: r for r in table(out)}
    for adapter, pods in served(world).items():
        assert set(rows[adapter]["CONFIRMED"].split(",")) == pods, (adapter, out)
        assert rows[adapter]["STATE"] == "Ready" and rows[adapter]["WHY NOT ELSEWHERE"] == "-"
    assert rows["huge-lora"]["STATE"] == "Failed"
    assert "rank 64 exceeds the max-lora-rank" in rows["huge-lora"]["WHY NOT ELSEWHERE"]
    assert "(largest 16)" in rows["huge-lora"]["WHY NOT ELSEWHERE"]
    hostile = next(r for r in table(out) if r["LORAADAPTER"] == "hostile")
    assert hostile["STATE"] == "Failed" and "was trained for 'tiny-llama'" in hostile["WHY NOT ELSEWHERE"]

    code, out, err = await run(world, "status", "local-adapters", "-n", world.namespace, "-o", "wide")
    assert code == 0, err
    wide = table(out)
    assert {r["ADAPTER"] for r in wide} == {"chat-lora", "sql-lora", "summary-lora"}
    assert all(r["BASE MODEL"] == "tiny-llama" and len(r["VERSION"]) == 12 for r in wide), out
    assert all(len(r["PLACED"].split(",")) == 2 for r in wide), out

    code, out, err = await run(world, "status", "-n", world.namespace, "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert {a["name"]: set(a["confirmed"]) for a in doc["adapters"] if a["confirmed"]} == served(world)
    assert {c["name"] for c in doc["loraAdapters"]} == {"local-adapters", "s3-adapters",
                                                        "big-rank", "hostile"}


async def test_status_of_a_missing_resource_and_an_unreachable_controller_fail_in_one_line(
        world: World, tmp_path: Path) -> None:
    code, out, err = await run(world, "status", "nope", "-n", world.namespace)
    assert code == 1 and out == "" and err.strip().count("\n") == 0
    assert 'loraadapters "nope" not found' in err
    proc = await asyncio.to_thread(kubectl_lora, "status", "-n", world.namespace,
                                   kubeconfig=world.kubeconfig, url="http://127.0.0.1:9")
    assert proc.returncode == 1 and proc.stderr.startswith("error: cannot reach the controller")
    assert proc.stderr.strip().count("\n") == 0
    code, _, err = await run(world, "status", "--context", "no-such-context")
    assert code == 1 and "context 'no-such-context' is not in the kubeconfig" in err
    code, _, err = await run(world, "status", "-o", "yaml")
    assert code == 2 and "invalid choice" in err


async def test_namespace_and_context_come_from_the_kubeconfig(world: World, tmp_path: Path) -> None:
    config = yaml.safe_load(world.kubeconfig.read_text())
    base = config["contexts"][0]
    config["contexts"] = [
        {"name": "here", "context": {**base["context"], "namespace": world.namespace}},
        {"name": "elsewhere", "context": {**base["context"], "namespace": "default"}},
    ]
    config["current-context"] = "here"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    code, out, err = await run(world, "status", kubeconfig=kubeconfig)
    assert code == 0 and "local-adapters" in out, err
    code, out, err = await run(world, "status", "--context", "elsewhere", kubeconfig=kubeconfig)
    assert code == 1 and "not served by this controller" in err, (out, err)
    code, out, err = await run(world, "--context", "elsewhere", "status", "-n", world.namespace,
                         kubeconfig=kubeconfig)
    assert code == 0 and "local-adapters" in out, err


async def test_why_explains_with_figures_and_lists_eligible_pods(world: World) -> None:
    code, out, err = await run(world, "why", "huge-lora", "-n", world.namespace)
    assert code == 0, err
    assert "rank 64 exceeds the max-lora-rank of every Ready pod serving tiny-llama" in out
    assert "Eligible pods" in out and "  none" in out
    for pod in world.cluster.pods:
        assert f"{pod}   --max-lora-rank 16 is below the adapter's rank 64" in out, out

    code, out, err = await run(world, "why", "sql-lora", "-n", world.namespace)
    assert code == 0, err
    pods = served(world)["sql-lora"]
    assert f"is confirmed on {', '.join(sorted(pods))} (2 replica(s))" in out, out
    assert "podSelector lora-enabled=true,model=tiny-llama" in out and "priority 10" in out
    section = out.split("Eligible pods", 1)[1]
    rows = {r["POD"]: r for r in table(section.split("\n", 1)[1])}
    assert set(rows) == set(world.cluster.pods)
    for pod, row in rows.items():
        used = len(world.cluster.loaded(pod))
        assert row["FREE SLOTS"] == f"{6 - used}/6", (pod, row)
        assert row["HAS IT"] == ("confirmed" if pod in pods else "-")

    code, out, err = await run(world, "why", "sql-lora", "-n", world.namespace, "-o", "json")
    assert code == 0 and json.loads(out)["needs"]["replicas"] == 2
    code, _, err = await run(world, "why", "no-such-lora", "-n", world.namespace)
    assert code == 1 and "AdapterNotFound" in err


async def test_the_controller_is_found_through_its_service(world: World, tmp_path: Path,
                                                          control_plane: ControlPlane) -> None:
    """Without --controller-url, the plugin looks for the chart's Service and calls it through
    the API server's service proxy. The API server proxies only to routable addresses, and the
    controller here listens on loopback, so the call itself is refused by the API server: the
    plugin says which Service it used and what the API server answered, in one line."""
    code, _, err = await run(world, "status", "-n", world.namespace, url=False)
    assert code == 1 and "no lora-controller Service found" in err and "--controller-url" in err
    kubectl(control_plane, "apply", "-n", world.namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lora-controller",
                     "labels": {"app.kubernetes.io/name": "lora-controller"}},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": world.ctl.port}]}}))
    code, _, err = await run(world, "status", "-n", world.namespace, url=False)
    assert code == 1 and err.strip().count("\n") == 0, err
    assert f"Service {world.namespace}/lora-controller (through the API server)" in err, err
    code, _, err = await run(world, "status", "-n", world.namespace, "--controller-service",
                       f"{world.namespace}/absent", url=False)
    assert code == 1 and f"cannot read Service {world.namespace}/absent" in err
