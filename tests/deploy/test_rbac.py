"""The RBAC proof: the controller, authenticated as the chart's ServiceAccount (a token from the
real API server's TokenRequest API, bound only by the chart's roles), runs the end-to-end scenario
(discovery with a credentials Secret, placement, loads, status, events, leader Lease, finalizer),
and actions outside its roles are refused.

Two shapes of the chart: the default (a ClusterRole; the controller watches every namespace) and
`watchNamespaces` (a Role in the watched namespace, nothing elsewhere)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import Cluster
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.kubectl import kubectl, kubectl_json
from lora_controller.devenv.waiting import eventually
from lora_controller.kube.client import ApiError
from lora_controller.kube.resources import LORA_ADAPTERS
from tests.deploy.rendering import BUILD_TIMEOUT, JSON, dump, one, render
from tests.deploy.test_chart import run_args

pytestmark = [pytest.mark.k8s, pytest.mark.usefixtures("helm_binary"),
              pytest.mark.timeout(BUILD_TIMEOUT + 300)]

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# An RBAC denial, as the API server words it.
DENIED = re.compile(r"forbidden: User \\?\"system:serviceaccount:[^\"\\]+\\?\" cannot")


class ServiceAccountKubectl:
    """kubectl as the ServiceAccount, through its own kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=60)

    def refused(self, *args: str) -> None:
        proc = self(*args)
        assert proc.returncode != 0, f"kubectl {' '.join(args)} was allowed: {proc.stdout}"
        assert "forbidden" in proc.stderr.lower(), proc.stderr

    def can_i(self, *args: str) -> bool:
        proc = self("auth", "can-i", *args)
        return proc.stdout.strip() == "yes"


@pytest.fixture
def installed(control_plane: ControlPlane, namespace: str, tmp_path: Path,
              request: pytest.FixtureRequest) -> Iterator[tuple[list[JSON], Path]]:
    """The chart's ServiceAccount, roles and bindings applied (release namespace: the test's);
    yields the rendered objects and a kubeconfig holding a token of that ServiceAccount."""
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    settings = [s.replace("{ns}", namespace) for s in request.param]
    objects = render(release, namespace, set_json=settings, include_crds=False)
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(dump(rbac))
    kubectl(control_plane, "apply", "-f", str(manifest))
    try:
        sa = one(objects, "ServiceAccount")["metadata"]["name"]
        token = kubectl(control_plane, "create", "token", sa, "-n", namespace,
                        "--duration=1h").stdout.strip()
        kubeconfig = control_plane.write_kubeconfig(
            tmp_path / "sa-kubeconfig", user=f"system:serviceaccount:{namespace}:{sa}", token=token)
        yield objects, kubeconfig
    finally:
        kubectl(control_plane, "delete", "-f", str(manifest), "--wait=false", check=False)


def local_spec(path: Path, secret: str) -> JSON:
    return {
        "baseModel": "tiny-llama",
        "adapterSource": {"type": "local", "repository": str(path), "prefix": "lora-"},
        "credentialsSecretRef": {"name": secret},
        "deploymentConfig": {"podSelector": {"matchLabels": {"lora-enabled": "true"}}},
    }


def rbac_denials(log: str) -> list[str]:
    return [line for line in log.splitlines() if DENIED.search(line)]


def test_denial_pattern_matches_the_api_servers_words() -> None:
    line = ('{"error": "403 Forbidden: leases.coordination.k8s.io \\"x\\" is forbidden: User '
            '\\"system:serviceaccount:ns:sa\\" cannot get resource \\"leases\\""}')
    assert rbac_denials(line) == [line]
    assert not rbac_denials("namespace is being terminated: forbidden: unable to create")


@pytest.mark.parametrize(
    ("installed", "watch_all"),
    [pytest.param([], True, id="clusterrole"),
     pytest.param(['watchNamespaces=["{ns}"]'], False, id="role-per-namespace")],
    indirect=["installed"],
)
async def test_controller_runs_with_only_the_charts_rbac(
    control_plane: ControlPlane, namespace: str, cluster: Cluster, adapter_dir: Path,
    start_controller: Callable[..., ControllerProcess], installed: tuple[list[JSON], Path],
    watch_all: bool,
) -> None:
    objects, kubeconfig = installed
    args = run_args(one(objects, "Deployment"))
    assert (args.namespaces is None) == watch_all
    sa = ServiceAccountKubectl(kubeconfig)
    assert sa("auth", "whoami", "-o", "json").returncode == 0

    write_adapters(adapter_dir, ["lora-a", "lora-b"])
    kubectl(control_plane, "create", "secret", "generic", "source-creds", "-n", namespace,
            "--from-literal=note=local sources read no key")
    for i in range(2):
        await cluster.add_pod(f"vllm-{i}", node=f"node-{i}")
    # The Deployment's flags that matter here; listen and store are the harness's.
    extra = ["--lease-name", args.lease_name, "--lease-namespace", namespace]
    ctl = start_controller(*extra, kubeconfig=kubeconfig, all_namespaces=watch_all)
    await ctl.wait_ready()
    await cluster.apply("local", local_spec(adapter_dir, "source-creds"))
    status = await cluster.wait_status("local", lambda s: s.get("phase") == "Ready", what="Ready")
    assert sorted(status["loadedAdapters"]) == ["lora-a", "lora-b"]
    assert all(set(cluster.loaded(p)) == {"lora-a", "lora-b"} for p in cluster.pods)

    # What the ServiceAccount wrote: the finalizer, the status (above), events, the Lease.
    cr = await cluster.cr("local")
    assert "production-stack.vllm-project/unload-adapters" in cr["metadata"]["finalizers"]
    events = kubectl_json(control_plane, "get", "events.v1.events.k8s.io", "-n", namespace)["items"]
    assert any(e.get("reportingController") == "production-stack.vllm-project/lora-controller"
               and e["regarding"]["name"] == "local" for e in events), events
    lease = kubectl_json(control_plane, "get", "lease", args.lease_name, "-n", namespace)
    assert lease["spec"]["holderIdentity"]

    # Deleted: the controller unloads everything, then removes its finalizer.
    await cluster.kube.delete(LORA_ADAPTERS, "local", namespace=cluster.namespace)
    await eventually(lambda: all(not cluster.loaded(p) for p in cluster.pods), timeout=30,
                     what="adapters unloaded after deletion")

    async def gone() -> bool:
        try:
            await cluster.cr("local")
        except ApiError as exc:
            return exc.not_found
        return False

    for _ in range(300):
        if await gone():
            break
        await asyncio.sleep(0.1)
    assert await gone(), "the finalizer was not removed"
    ctl.stop()

    # Nothing the controller tried was refused.
    log = ctl.log_path.read_text(errors="replace")
    assert "finalizer removed" in log
    assert rbac_denials(log) == []

    # Outside its roles: refused.
    ns = namespace
    sa.refused("get", "nodes")
    sa.refused("create", "deployment", "intruder", "--image=busybox", "-n", ns)
    sa.refused("delete", "pod", "vllm-0", "-n", ns)
    sa.refused("get", "secret", "source-creds", "-n", ns)  # list+watch only, never get
    sa.refused("get", "lease", "someone-elses", "-n", ns)  # its own Lease only
    sa.refused("delete", "loraadapters.production-stack.vllm-project", "local", "-n", ns)
    assert not sa.can_i("delete", "pods", "-n", ns)
    assert not sa.can_i("update", "loraadapters.production-stack.vllm-project", "-n", ns)
    assert not sa.can_i("create", "leases.coordination.k8s.io", "-n", "default")
    assert sa.can_i("patch", "loraadapters.production-stack.vllm-project", "--subresource=status",
                    "-n", ns)
    assert sa.can_i("list", "pods", "-n", ns)
    assert sa.can_i("watch", f"leases.coordination.k8s.io/{args.lease_name}", "-n", ns)
    if watch_all:
        assert sa.can_i("list", "pods", "--all-namespaces")
        assert sa("get", "secrets", "-n", "default").returncode == 0  # list, any namespace
    else:
        sa.refused("get", "pods", "-n", "default")
        sa.refused("get", "loraadapters.production-stack.vllm-project", "-n", "default")
        sa.refused("get", "secrets", "-n", "default")
        sa.refused("get", "secrets", "--all-namespaces")
