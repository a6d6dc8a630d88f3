"""The Helm chart: lint, what `helm template` renders for the default and the full values, values
documented, and every rendered object accepted by the real API server (strict field validation)."""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from lora_controller.cli.main import build_parser
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.kubectl import kubectl
from tests.deploy.rendering import (
    BUILD_TIMEOUT,
    CHART,
    CRD,
    FULL_VALUES,
    JSON,
    REPO,
    by_kind,
    container,
    dump,
    helm,
    one,
    render,
)

# The first test to need helm builds it (minutes on a fresh machine).
pytestmark = [pytest.mark.usefixtures("helm_binary"), pytest.mark.timeout(BUILD_TIMEOUT + 300)]

DATA = Path(__file__).parent / "data"
# What the controller calls (lora_controller/reconcile/controller.py, kube/*.py): nothing more.
WATCH_RULES = {
    ("production-stack.vllm-project", "loraadapters"): {"list", "watch", "patch"},
    ("production-stack.vllm-project", "loraadapters/status"): {"patch"},
    ("", "pods"): {"list", "watch"},
    ("", "secrets"): {"list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}


def run_args(deployment: JSON) -> argparse.Namespace:
    """The container's args, parsed by the controller's own parser (the entry point is `run`)."""
    args = container(deployment)["args"]
    return build_parser().parse_args(["run", *args])


def rules_of(role: JSON) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def no_wildcards(objects: list[JSON]) -> None:
    for obj in objects:
        for rule in obj.get("rules", []) if obj["kind"] in ("Role", "ClusterRole") else []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in json.dumps(rule.get(field, [])), (obj["metadata"]["name"], rule)


def mounts(deployment: JSON) -> dict[str, JSON]:
    return {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}


def volumes(deployment: JSON) -> dict[str, JSON]:
    return {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_the_charts_crd_is_the_repositorys() -> None:
    copies = [CHART / "crds" / CRD.name, REPO / "deploy" / "kustomize" / "base" / "crds" / CRD.name]
    for copy in copies:
        assert copy.read_bytes() == CRD.read_bytes(), f"{copy} differs from {CRD}: copy it again"
    assert [p.name for p in (CHART / "crds").iterdir()] == [CRD.name]


def test_helm_lint_strict_default_and_full() -> None:
    for extra in ([], ["--values", str(FULL_VALUES)]):
        proc = helm("lint", "--strict", str(CHART), *extra)
        assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout, proc.stdout


def test_helm_lint_catches_a_broken_chart(tmp_path: Path) -> None:
    broken = tmp_path / "chart"
    broken.mkdir()
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (broken / "templates").mkdir()
    (broken / "templates" / "x.yaml").write_text("kind: ConfigMap\nmetadata:\n  name: {{ .Values.x.y }}\n")
    assert helm("lint", "--strict", str(broken), check=False).returncode != 0


def test_default_render() -> None:
    objects = render("lora-controller", "lora-controller")
    names = by_kind(objects)
    assert set(names) == {
        ("CustomResourceDefinition", "loraadapters.production-stack.vllm-project"),
        ("ServiceAccount", "lora-controller"),
        ("ClusterRole", "lora-controller"),
        ("ClusterRoleBinding", "lora-controller"),
        ("Role", "lora-controller-leader-election"),
        ("RoleBinding", "lora-controller-leader-election"),
        ("PersistentVolumeClaim", "lora-controller-adapter-store"),
        ("Service", "lora-controller"),
        ("Deployment", "lora-controller"),
        ("PodDisruptionBudget", "lora-controller"),
    }
    assert yaml.safe_load(CRD.read_text()) == names[("CustomResourceDefinition",
                                                       "loraadapters.production-stack.vllm-project")]
    for obj in objects:
        if obj["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "lora-controller", obj["kind"]

    dep = one(objects, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    ctr = container(dep)
    assert dep["spec"]["replicas"] == 2
    args = run_args(dep)
    assert args.leader_elect is True and args.lease_name == "lora-controller"
    assert args.listen == "0.0.0.0:8080" and args.namespaces is None
    assert args.adapter_store == "/var/lib/lora-adapters"
    assert args.log_format == "json"
    assert args.router_token_file is None and args.vllm_api_key_file is None
    # The Lease namespace and advertise URL come from the downward API.
    env = {e["name"]: e for e in ctr["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # Probes on the router API port.
    port = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert port == {"http": 8080}
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ctr["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"}}
    # Hardened: non-root, read-only root, no capabilities, RuntimeDefault seccomp.
    sc, psc = ctr["securityContext"], pod["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    # The adapter store at --adapter-store, from the new claim; /tmp writable.
    vols = volumes(dep)
    store = mounts(dep)[args.adapter_store]
    assert vols[store["name"]]["persistentVolumeClaim"]["claimName"] == "lora-controller-adapter-store"
    assert "emptyDir" in vols[mounts(dep)["/tmp"]["name"]]
    pvc = one(objects, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert ctr["image"] == "ghcr.io/lora-controller/lora-controller:0.1.0"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __import__("lora_controller").__version__

    # The Service and the budget select exactly these pods.
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = one(objects, "Service")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http",
                                     "protocol": "TCP"}]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1


def test_the_service_balances_over_every_ready_replica() -> None:
    """Routers reach every replica, leader or standby: the Service selects the labels all replicas
    share (nothing a leader alone would carry), keeps no client on one replica, and takes a
    replica in once its /readyz says its caches are synced (the code's readiness, not leadership:
    tests/e2e/test_failover.py)."""
    objects = render("lora-controller", "lora-controller")
    dep, svc = one(objects, "Deployment"), one(objects, "Service")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"].get("sessionAffinity", "None") == "None"
    assert not svc["spec"].get("publishNotReadyAddresses")
    assert svc["spec"]["type"] == "ClusterIP" and "clusterIP" not in svc["spec"]  # not headless
    probe = container(dep)["readinessProbe"]
    assert probe["httpGet"] == {"path": "/readyz", "port": "http"}
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert not [o for o in objects if o["kind"] in ("ServiceMonitor", "PrometheusRule",
                                                    "ConfigMap")]


def test_default_rbac_is_least_privilege() -> None:
    objects = render("rel", "ops")
    no_wildcards(objects)
    cluster_role = one(objects, "ClusterRole")
    assert rules_of(cluster_role) == WATCH_RULES
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == "ops"
    lease_rules = role["rules"]
    assert {(tuple(r["verbs"]), tuple(r.get("resourceNames", []))) for r in lease_rules} == {
        (("get", "update", "watch"), ("rel-lora-controller",)), (("create",), ())}
    assert all(r["apiGroups"] == ["coordination.k8s.io"] and r["resources"] == ["leases"]
               for r in lease_rules)
    assert run_args(one(objects, "Deployment")).lease_name == "rel-lora-controller"
    sa = one(objects, "ServiceAccount")["metadata"]
    for binding in (one(objects, "ClusterRoleBinding"), one(objects, "RoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"],
                                        "namespace": "ops"}]
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert one(objects, "RoleBinding")["roleRef"]["name"] == role["metadata"]["name"]


def test_full_values_render() -> None:
    objects = render("r1", "ml", values=[FULL_VALUES])
    full = yaml.safe_load(FULL_VALUES.read_text())
    no_wildcards(objects)
    kinds = by_kind([o for o in objects if o["kind"] not in ("Role", "RoleBinding")])
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    # One Role per watched namespace, plus the lease Role in the release namespace.
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects
             if o["kind"] == "Role"}
    assert set(roles) == {("lora-team-a", "lora"), ("lora-team-b", "lora"),
                          ("ml", "lora-leader-election")}
    for ns in ("lora-team-a", "lora-team-b"):
        rules = rules_of(roles[(ns, "lora")])
        assert rules == WATCH_RULES
    bindings = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects
                if o["kind"] == "RoleBinding"}
    assert set(bindings) == set(roles)
    for (ns, name), binding in bindings.items():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lora-sa",
                                        "namespace": "ml"}], ns
    dep = kinds[("Deployment", "lora")]
    args = run_args(dep)
    assert args.namespaces == ["lora-team-a", "lora-team-b"]
    assert args.lease_name == "lora-leader" and args.lease_duration == 30
    assert args.listen == "0.0.0.0:9090" and args.resync == 900  # extraArgs come last and win
    assert dep["spec"]["replicas"] == 3
    ctr = container(dep)
    assert ctr["image"] == f"{full['image']['repository']}@{full['image']['digest']}"
    # The token and API key files are where the Secrets are mounted.
    vols, mnts = volumes(dep), mounts(dep)
    for path, secret, key in ((args.router_token_file, "lora-router-token", "token"),
                              (args.vllm_api_key_file, "vllm-api-key", "VLLM_API_KEY")):
        folder, name = path.rsplit("/", 1)
        assert name == key and mnts[folder]["readOnly"] is True
        assert vols[mnts[folder]["name"]]["secret"]["secretName"] == secret
    store = mnts[args.adapter_store]
    assert store["subPath"] == "lora"
    assert vols[store["name"]]["persistentVolumeClaim"]["claimName"] == "shared-adapters"
    assert mnts["/models/adapters"]["name"] == "local-adapters"
    sm = kinds[("ServiceMonitor", "lora")]
    assert sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = kinds[("Service", "lora")]
    assert svc["spec"]["ports"][0]["port"] == 80
    assert kinds[("PodDisruptionBudget", "lora")]["spec"]["minAvailable"] == 2
    assert kinds[("ServiceAccount", "lora-sa")]["metadata"]["annotations"]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "lora-sa"
    # Alerts and the dashboard, with their labels; both name the release's Lease.
    rule = kinds[("PrometheusRule", "lora")]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"LoraAdaptersFailing", "LoraDriftRepairsRepeating", "LoraLoadsFailing",
                           "LoraControllerNotLeading", "LoraWorkQueueStuck"}
    assert all(r["labels"]["team"] == "ml-platform" and r["labels"]["severity"] for r in
               alerts.values())
    assert 'name="lora-leader"' in alerts["LoraControllerNotLeading"]["expr"]
    board = kinds[("ConfigMap", "lora-dashboard")]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "LoRA"}
    dashboard = json.loads(board["data"]["lora-controller.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(dashboard["panels"]) >= 15 and 'name="lora-leader"' in " ".join(exprs)
    assert "LORA_LEASE_NAME" not in board["data"]["lora-controller.json"]


def test_switches() -> None:
    # No claim at all: an emptyDir store (type: local sources only).
    objects = render(set_json=['adapterStore={"newClaim":{"create":false}}'])
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    dep = one(objects, "Deployment")
    assert volumes(dep)[mounts(dep)["/var/lib/lora-adapters"]["name"]] == {
        "name": "adapter-store", "emptyDir": {}}
    # One replica: no budget (it would block every drain); no leader election: no lease Role,
    # and no alert about leading.
    objects = render(set_json=["replicaCount=1", 'leaderElection={"enabled":false}',
                               'prometheusRule={"enabled":true}'])
    rule = one(objects, "PrometheusRule")
    assert "LoraControllerNotLeading" not in {r["alert"] for r in rule["spec"]["groups"][0]["rules"]}
    assert not [o for o in objects if o["kind"] in ("PodDisruptionBudget", "Role", "RoleBinding")]
    assert run_args(one(objects, "Deployment")).leader_elect is False
    # No RBAC, an existing ServiceAccount.
    objects = render(set_json=['rbac={"create":false}',
                               'serviceAccount={"create":false,"name":"mine"}'])
    assert not [o for o in objects if o["kind"] in ("ServiceAccount", "Role", "ClusterRole",
                                                   "RoleBinding", "ClusterRoleBinding")]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    failed = helm("template", "x", str(CHART), "--set-json",
                  'serviceAccount={"create":false}', check=False)
    assert failed.returncode != 0 and "serviceAccount.name is required" in failed.stderr


def _documented(lines: list[str], line: int) -> bool:
    """Whether the comment block right above a key's line holds a `# --` description."""
    i = line - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        if lines[i].strip().startswith("# --"):
            return True
        i -= 1
    return False


def _leaves(node: yaml.Node, path: str, lines: list[str], documented: bool,
            out: dict[str, bool]) -> None:
    if isinstance(node, yaml.MappingNode) and node.value:
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else key.value
            _leaves(value, child, lines, documented or _documented(lines, key.start_mark.line), out)
    else:
        out[path] = documented


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    leaves: dict[str, bool] = {}
    _leaves(yaml.compose(text), "", lines, False, leaves)
    assert len(leaves) > 40
    assert [k for k, ok in leaves.items() if not ok] == []
    # docs/install.md lists every documented key (its "Values" table).
    install = (REPO / "docs" / "install.md").read_text()
    section = install.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    table = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", section, flags=re.M))
    keys: set[str] = set()
    documented_paths(yaml.compose(text), "", lines, keys)
    assert sorted(keys - table) == [], "documented in values.yaml but not in docs/install.md"
    assert sorted(table - keys) == [], "in docs/install.md but not in values.yaml"


def documented_paths(node: yaml.Node, path: str, lines: list[str], out: set[str]) -> None:
    """Every key path that carries its own `# --` description."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else key.value
            if _documented(lines, key.start_mark.line):
                out.add(child)
            else:
                documented_paths(value, child, lines, out)


# -- against the real API server ---------------------------------------------------------------

SERVICE_MONITOR_CRD = DATA / "servicemonitor-crd.yaml"
PROMETHEUS_RULE_CRD = DATA / "prometheusrule-crd.yaml"


def dry_run(cp: ControlPlane, objects: list[JSON], tmp_path: Path) -> str:
    """`kubectl apply --dry-run=server --validate=strict`: admission and schema, nothing stored."""
    manifest = tmp_path / f"manifest-{uuid.uuid4().hex[:6]}.yaml"
    manifest.write_text(dump(objects))
    proc = kubectl(cp, "apply", "--dry-run=server", "--validate=strict", "-f", str(manifest),
                   check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _applied(output: str) -> list[tuple[str, str]]:
    """(resource, name) of every object kubectl reports as accepted."""
    found = []
    for line in output.splitlines():
        match = re.match(r"([\w.]+)/(\S+) (?:created|configured|unchanged) \(server dry run\)", line)
        if match:
            found.append((match.group(1).split(".")[0], match.group(2)))
    return found


@pytest.mark.k8s
def test_default_render_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    objects = render("lc", namespace)
    output = dry_run(control_plane, objects, tmp_path)
    assert len(_applied(output)) == len(objects), output


@pytest.mark.k8s
def test_full_render_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # The Prometheus Operator is not installed here: a stand-in CRD with the fields we set.
    for crd, name in ((SERVICE_MONITOR_CRD, "servicemonitors"),
                      (PROMETHEUS_RULE_CRD, "prometheusrules")):
        kubectl(control_plane, "apply", "-f", str(crd))
        kubectl(control_plane, "wait", "--for=condition=Established",
                f"crd/{name}.monitoring.coreos.com", "--timeout=60s")
    other = f"{namespace}-b"
    kubectl(control_plane, "create", "namespace", other)
    try:
        objects = render("lc", namespace, values=[FULL_VALUES],
                         set_json=[f'watchNamespaces=["{namespace}","{other}"]'])
        output = _wait_served(control_plane, objects, tmp_path)
        assert len(_applied(output)) == len(objects), output
        assert ("servicemonitor", "lora") in _applied(output)
        assert ("prometheusrule", "lora") in _applied(output)
        assert ("configmap", "lora-dashboard") in _applied(output)
    finally:
        kubectl(control_plane, "delete", "namespace", other, "--wait=false", check=False)


def _wait_served(cp: ControlPlane, objects: list[JSON], tmp_path: Path) -> str:
    """Dry-run, retried while a just-created CRD is not served yet."""
    deadline = time.monotonic() + 30
    while True:
        manifest = tmp_path / "full.yaml"
        manifest.write_text(dump(objects))
        proc = kubectl(cp, "apply", "--dry-run=server", "--validate=strict", "-f", str(manifest),
                       check=False)
        waiting = "ServiceMonitor" in proc.stderr or "PrometheusRule" in proc.stderr
        if proc.returncode == 0 or time.monotonic() > deadline or not waiting:
            assert proc.returncode == 0, proc.stderr
            return proc.stdout
        time.sleep(0.3)


@pytest.mark.k8s
def test_strict_validation_refuses_a_misspelt_field(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The dry-run is not a rubber stamp: a typo in a rendered field is refused."""
    dep: dict[str, Any] = one(render("lc", namespace), "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    manifest = tmp_path / "typo.yaml"
    manifest.write_text(dump([dep]))
    proc = kubectl(control_plane, "apply", "--dry-run=server", "--validate=strict", "-f",
                   str(manifest), check=False)
    assert proc.returncode != 0 and "readinesProbe" in proc.stderr


def test_schema_refuses_misspelt_and_wrong_values() -> None:
    """values.schema.json: a typo in a key or a value fails `helm template`, not the cluster."""
    for setting, words in (("adapterStore.existingclaim=foo", "existingclaim"),
                           ("controller.logFormat=text", "logFormat"),
                           ("leaderElection.leaseDuration=0", "leaseDuration"),
                           ("replicas=2", "replicas"),
                           ("prometheusRule.enabeld=true", "enabeld"),
                           ("grafanaDashboard.label=", "label")):
        proc = helm("template", "x", str(CHART), "--set", setting, check=False)
        assert proc.returncode != 0 and words in proc.stderr, (setting, proc.stderr)
