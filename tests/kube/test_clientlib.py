"""kubernetes_asyncio imported lean: the controller's process loads none of its generated API
classes and models, talks to the real API server all the same, and other code of the same
process still finds the whole library. Each case runs in a fresh interpreter (this test process
has imported kubernetes_asyncio in full already)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lora_controller.devenv.controlplane import ControlPlane


def _python(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_client_imports_no_generated_api_or_model() -> None:
    found = _python(
        "import json, sys\n"
        "import lora_controller.cli.run\n"
        "mods = [m for m in sys.modules if m.startswith('kubernetes_asyncio.client.')]\n"
        "print(json.dumps({'api': [m for m in mods if '.client.api.' in m],\n"
        "                  'models': [m for m in mods if '.client.models.' in m]}))\n")
    assert found == {"api": [], "models": []}


def test_the_rest_of_the_library_is_there_on_first_use() -> None:
    found = _python(
        "import json\n"
        "import lora_controller.kube.client as ours\n"
        "import kubernetes_asyncio\n"
        "from kubernetes_asyncio import client, config, watch\n"
        "from kubernetes_asyncio.client.models import V1Pod\n"
        "print(json.dumps({'version': kubernetes_asyncio.__version__,\n"
        "                  'api': client.CoreV1Api.__name__, 'model': V1Pod.__name__,\n"
        "                  'watch': watch.Watch.__name__,\n"
        "                  'same': ours.ApiClient is client.ApiClient,\n"
        "                  'loader': config.load_kube_config is ours.load_kube_config}))\n")
    assert found["api"] == "CoreV1Api" and found["model"] == "V1Pod" and found["watch"] == "Watch"
    assert found["same"] is True and found["loader"] is True and found["version"]


@pytest.mark.k8s
def test_a_lean_client_talks_to_the_api_server(control_plane: ControlPlane) -> None:
    found = _python(
        "import asyncio, json, sys\n"
        "from lora_controller.kube.client import KubeClient\n"
        "from lora_controller.kube.resources import NAMESPACES\n"
        "async def main():\n"
        f"    kube = await KubeClient.from_config(kubeconfig={str(control_plane.kubeconfig)!r})\n"
        "    try:\n"
        "        names = [n['metadata']['name'] for n in (await kube.list(NAMESPACES))['items']]\n"
        "    finally:\n"
        "        await kube.close()\n"
        "    models = [m for m in sys.modules if m.startswith('kubernetes_asyncio.client.models.')]\n"
        "    print(json.dumps({'names': names, 'models': models}))\n"
        "asyncio.run(main())\n")
    assert "default" in found["names"] and found["models"] == []  # type: ignore[operator]
