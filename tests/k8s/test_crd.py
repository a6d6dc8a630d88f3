"""The LoraAdapter CRD against the real API server: installation, samples, validation, status."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client as k8s_client

from lora_controller.api.crd import render_crd_yaml
from lora_controller.api.types import GROUP, PLURAL, VERSION, LoraAdapter, LoraAdapterStatus, Phase
from lora_controller.devenv.controlplane import ControlPlane
from tests.support.controlplane import CRDS, kubectl, kubectl_json

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]

SAMPLES = sorted((REPO / "deploy" / "samples").glob("*.yaml"))

VALID: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "LoraAdapter",
    "metadata": {"name": "x"},
    "spec": {
        "baseModel": "tiny-llama",
        "adapterSource": {"type": "s3", "repository": "s3://bucket/prefix"},
    },
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """VALID with one field set (dotted path under the object; value None deletes it)."""
    obj = copy.deepcopy(VALID)
    keys = path.split(".")
    node = obj
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return obj


def _source(**fields: Any) -> dict[str, Any]:
    return _with("spec.adapterSource", fields)


def expr(key: str, operator: str, values: list[str] | None = None) -> dict[str, Any]:
    """One matchExpressions entry (values left out when None)."""
    return {"key": key, "operator": operator, **({} if values is None else {"values": values})}


def _selector(*expressions: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    """VALID with spec.deploymentConfig.podSelector set."""
    selector: dict[str, Any] = {}
    if expressions:
        selector["matchExpressions"] = list(expressions)
    if labels is not None:
        selector["matchLabels"] = labels
    return _with("spec.deploymentConfig", {"podSelector": selector})


# (case, object, a fragment the API server's message must contain)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown source type", _source(type="gcs", repository="gs://b"),
     'Unsupported value: "gcs": supported values: "huggingface", "s3", "local"'),
    ("s3 repository without scheme", _source(type="s3", repository="bucket/prefix"),
     "for type s3, repository must be s3://BUCKET or s3://BUCKET/PREFIX"),
    ("s3 repository with uppercase bucket", _source(type="s3", repository="s3://My_Bucket/x"),
     "for type s3, repository must be s3://BUCKET"),
    ("s3 repository with empty bucket", _source(type="s3", repository="s3:///prefix"),
     "for type s3, repository must be s3://BUCKET"),
    ("huggingface repository with three segments",
     _source(type="huggingface", repository="org/repo/extra"),
     "for type huggingface, repository must be ORG or ORG/REPO"),
    ("huggingface repository as URL",
     _source(type="huggingface", repository="https://huggingface.co/org/repo"),
     "for type huggingface, repository must be ORG or ORG/REPO"),
    ("relative local path", _source(type="local", repository="models/adapters"),
     "for type local, repository must be an absolute path"),
    ("local path escaping with ..", _source(type="local", repository="/models/../etc"),
     "without '.' or '..' segments"),
    ("local path with a line break", _source(type="local", repository="/models/a\nb"),
     "repository must not contain control characters"),
    ("s3 prefix with a tab", _source(type="s3", repository="s3://bucket/p\tq"),
     "repository must not contain control characters"),
    ("empty repository", _source(type="local", repository=""),
     "spec.adapterSource.repository: Invalid value"),
    ("missing repository", _source(type="local"), "spec.adapterSource.repository: Required value"),
    ("missing source type", _source(repository="/models"), "spec.adapterSource.type: Required value"),
    ("revision on s3", _source(type="s3", repository="s3://bucket", revision="main"),
     "revision applies only to type huggingface"),
    ("endpoint on local", _source(type="local", repository="/m", endpoint="http://minio:9000"),
     "endpoint and region apply only to type s3"),
    ("endpoint not a URL", _source(type="s3", repository="s3://bucket", endpoint="minio:9000"),
     "spec.adapterSource.endpoint: Invalid value"),
    ("priority above range", _with("spec.schedulingConfig", {"priority": 1_000_001}),
     "spec.schedulingConfig.priority: Invalid value: 1000001: spec.schedulingConfig.priority in "
     "body should be less than or equal to 1000000"),
    ("negative priority", _with("spec.schedulingConfig", {"priority": -1}),
     "should be greater than or equal to 0"),
    ("unknown preemption policy", _with("spec.schedulingConfig", {"preemptionPolicy": "Always"}),
     'Unsupported value: "Always": supported values: "LowerPriority", "None"'),
    ("memory not a quantity",
     _with("spec.schedulingConfig", {"resourceRequirements": {"memory": "2 gigs"}}),
     "must be a Kubernetes quantity greater than zero, such as 512Mi or 2Gi"),
    ("memory zero", _with("spec.schedulingConfig", {"resourceRequirements": {"memory": "0"}}),
     "must be a Kubernetes quantity greater than zero"),
    ("memory negative bytes", _with("spec.schedulingConfig", {"resourceRequirements": {"memory": -5}}),
     "must be a Kubernetes quantity greater than zero"),
    ("empty adapter name", _source(type="local", repository="/m", adapters=[""]),
     "spec.adapterSource.adapters[0]: Invalid value"),
    ("adapter name with ..", _source(type="local", repository="/m", adapters=["ok", ".."]),
     "adapter names must start with a letter or digit"),
    ("adapter name with /", _source(type="local", repository="/m", adapters=["a/b"]),
     "no '/', no '..'"),
    ("adapter name escaping", _source(type="local", repository="/m", adapters=["../../etc"]),
     "adapter names must start with a letter or digit"),
    ("replicas zero", _with("spec.deploymentConfig", {"replicas": 0}),
     "spec.deploymentConfig.replicas: Invalid value: 0"),
    ("maxAdapters zero", _source(type="local", repository="/m", maxAdapters=0),
     "spec.adapterSource.maxAdapters: Invalid value: 0"),
    ("maxAdapters too large", _source(type="local", repository="/m", maxAdapters=100_000),
     "should be less than or equal to 10000"),
    ("missing baseModel", _with("spec.baseModel", None), "spec.baseModel: Required value"),
    ("empty baseModel", _with("spec.baseModel", ""), "spec.baseModel: Invalid value"),
    ("missing adapterSource", _with("spec.adapterSource", None),
     "spec.adapterSource: Required value"),
    ("missing spec", {k: v for k, v in VALID.items() if k != "spec"}, "spec: Required value"),
    ("secret name not a DNS name", _with("spec.credentialsSecretRef", {"name": "My Secret"}),
     "spec.credentialsSecretRef.name: Invalid value"),
    ("unknown credentials key", _with("spec.credentialsSecretRef",
                                      {"name": "s", "keys": {"PASSWORD": "p"}}),
     "keys may only rename HF_TOKEN"),
    ("unknown selector operator", _with("spec.deploymentConfig", {"podSelector": {
        "matchExpressions": [{"key": "a", "operator": "Matches"}]}}),
     'Unsupported value: "Matches"'),
    ("selector In without values", _selector(expr("a", "In")),
     "values must be given (non-empty) when operator is In or NotIn"),
    ("selector NotIn with empty values", _selector(expr("a", "NotIn", [])),
     "values must be given (non-empty) when operator is In or NotIn"),
    ("selector Exists with values", _selector(expr("a", "Exists", ["x"])),
     "values must be empty when operator is Exists or DoesNotExist"),
    ("selector DoesNotExist with values", _selector(expr("a", "DoesNotExist", [""])),
     "values must be empty when operator is Exists or DoesNotExist"),
    ("selector key with a space", _selector(expr("lora enabled!", "Exists")),
     "key must be a label key"),
    ("selector key with an empty name", _selector(expr("example.com/", "Exists")),
     "key must be a label key"),
    ("selector key name over 63", _selector(expr("a" * 64, "Exists")),
     "key must be a label key"),
    ("selector key prefix not DNS", _selector(expr("Example_Com/x", "Exists")),
     "key must be a label key"),
    ("selector key prefix over 253", _selector(expr("a" * 254 + "/x", "Exists")),
     "key must be a label key"),
    ("selector value not a label value", _selector(expr("a", "In", ["ok", "not ok!"])),
     "must be a label value"),
    ("selector value over 63", _selector(expr("a", "In", ["v" * 64])),
     "spec.deploymentConfig.podSelector.matchExpressions[0].values[0]: Too long"),
    ("matchLabels key with a space", _selector(labels={"lora enabled!": "true"}),
     "matchLabels keys must be label keys"),
    ("matchLabels value not a label value", _selector(labels={"lora": "-true"}),
     "must be a label value"),
    ("scaling min above max", _with("spec.deploymentConfig", {"scaling": {
        "mode": "Demand", "minReplicas": 3, "maxReplicas": 2}}),
     "minReplicas must not be greater than maxReplicas"),
    ("scaling to zero with loadOnStartup", _with("spec.deploymentConfig", {"scaling": {
        "mode": "Demand", "minReplicas": 0, "maxReplicas": 2}}),
     "scaling.minReplicas 0 requires loadOnStartup: false"),
    ("scaling target zero", _with("spec.deploymentConfig", {"scaling": {
        "mode": "Demand", "targetRequestsPerSecond": 0}}),
     "targetRequestsPerSecond must be positive"),
    ("scaling target negative", _with("spec.deploymentConfig", {"scaling": {
        "mode": "Demand", "targetRequestsPerSecond": -2.5}}),
     "targetRequestsPerSecond must be positive"),
    ("replicas with demand scaling", _with("spec.deploymentConfig", {
        "replicas": 2, "scaling": {"mode": "Demand", "maxReplicas": 4}}),
     "replicas applies to scaling mode Fixed"),
    ("demand fields with fixed scaling", _with("spec.deploymentConfig", {"scaling": {
        "maxReplicas": 4}}),
     "apply to mode Demand only"),
    ("unknown scaling mode", _with("spec.deploymentConfig", {"scaling": {"mode": "Auto"}}),
     'supported values: "Fixed", "Demand"'),
]


def test_committed_crd_is_generated_from_the_models() -> None:
    committed = (CRDS / "loraadapters.production-stack.vllm-project.yaml").read_text()
    assert committed == render_crd_yaml(), "crds/ is stale: run hack/gen-crd"


def test_crd_is_established_and_explained(control_plane: ControlPlane) -> None:
    crd = kubectl_json(control_plane, "get", "crd", f"{PLURAL}.{GROUP}")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    explain = kubectl(control_plane, "explain", "loraadapter.spec.adapterSource").stdout
    assert "s3://BUCKET/PREFIX" in explain
    assert "maxAdapters" in explain
    assert "allowPickleWeights" in explain and "torch.load" in explain
    explain_status = kubectl(control_plane, "explain", "loraadapter.status.phase").stdout
    assert "confirmed" in explain_status


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_is_accepted(control_plane: ControlPlane, namespace: str, sample: Path) -> None:
    kubectl(control_plane, "apply", "-n", namespace, "-f", str(sample))
    doc = yaml.safe_load(sample.read_text())
    got = kubectl_json(control_plane, "get", "loraadapter", "-n", namespace, doc["metadata"]["name"])
    parsed = LoraAdapter.model_validate(got)
    assert parsed.spec.base_model == doc["spec"]["baseModel"]
    # The status of a sample is never taken on create: only the controller writes it.
    assert parsed.status is None or parsed.status.phase is None


def test_printer_columns(control_plane: ControlPlane, namespace: str) -> None:
    kubectl(control_plane, "apply", "-n", namespace, "-f", str(SAMPLES[0]))
    header = kubectl(control_plane, "get", "loraadapters", "-n", namespace).stdout.splitlines()[0]
    assert header.split() == ["NAME", "BASE", "MODEL", "PHASE", "LOADED", "FAILED", "REASON",
                              "AGE"]
    short = kubectl(control_plane, "get", "lora", "-n", namespace).stdout
    assert SAMPLES[0].stem or short  # the short name resolves
    assert len(short.splitlines()) == 2


def test_at_least_twenty_distinct_invalid_cases() -> None:
    assert len({case for case, _, _ in INVALID}) >= 20
    assert len({json.dumps(obj, sort_keys=True) for _, obj, _ in INVALID}) == len(INVALID)


@pytest.mark.parametrize(("case", "obj", "message"), INVALID, ids=[c for c, _, _ in INVALID])
def test_invalid_resource_is_rejected(
    control_plane: ControlPlane, namespace: str, case: str, obj: dict[str, Any], message: str
) -> None:
    proc = kubectl(control_plane, "create", "-n", namespace, "-f", "-",
                   input=json.dumps(obj), check=False)
    assert proc.returncode != 0, f"{case}: the API server accepted an invalid resource"
    assert "is invalid" in proc.stderr, proc.stderr
    assert message in proc.stderr, f"{case}: {proc.stderr}"


def test_valid_baseline_is_accepted(control_plane: ControlPlane, namespace: str) -> None:
    kubectl(control_plane, "create", "-n", namespace, "-f", "-", input=json.dumps(VALID))
    got = kubectl_json(control_plane, "get", "loraadapter", "-n", namespace, "x")
    # Server-side defaults from the schema.
    assert got["spec"]["adapterSource"]["maxAdapters"] == 100
    assert got["spec"]["adapterSource"]["allowPickleWeights"] is False


def test_demand_scaling_as_the_issue_writes_it_is_accepted(control_plane: ControlPlane,
                                                           namespace: str) -> None:
    obj = _with("spec.deploymentConfig", {"loadOnStartup": False, "scaling": {
        "mode": "Demand", "minReplicas": 0, "maxReplicas": 4, "targetRequestsPerSecond": 5}})
    kubectl(control_plane, "create", "-n", namespace, "-f", "-", input=json.dumps(obj))
    got = LoraAdapter.model_validate(kubectl_json(control_plane, "get", "loraadapter", "-n",
                                                  namespace, "x"))
    scaling = got.spec.deployment().scaling
    assert scaling is not None and got.spec.deployment().demand_scaled()
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_requests_per_second) == (
        0, 4, 5.0)
    explained = kubectl(control_plane, "explain", "loraadapter.spec.deploymentConfig.scaling").stdout
    for field in ("mode", "minReplicas", "maxReplicas", "targetRequestsPerSecond",
                  "maxChangesPerReconcile"):
        assert field in explained


def test_selectors_kubernetes_accepts_are_accepted(control_plane: ControlPlane, namespace: str) -> None:
    obj = _selector(
        expr("app.kubernetes.io/name", "In", ["vllm", "vllm-2", "a.b_c"]),
        expr("lora-enabled", "NotIn", ["false", ""]), expr("gpu", "Exists"),
        expr("example.com/" + "n" * 63, "DoesNotExist", []),
        labels={"lora-enabled": "true", "x.y/z": "", "Model_Size": "7B"},
    )
    kubectl(control_plane, "create", "-n", namespace, "-f", "-", input=json.dumps(obj))
    got = LoraAdapter.model_validate(kubectl_json(control_plane, "get", "loraadapter", "-n",
                                                  namespace, "x"))
    selector = got.spec.deployment().pod_selector
    assert selector is not None and selector.match_expressions is not None
    assert [e.operator for e in selector.match_expressions] == ["In", "NotIn", "Exists",
                                                                "DoesNotExist"]


def test_memory_is_explained_as_a_quantity_not_an_object(control_plane: ControlPlane) -> None:
    """kubectl explain prints a field's OpenAPI type; an int-or-string field without one reads
    `<Object>`. memory is published as Kubernetes' own OpenAPI v2 describes a Quantity (type
    string), and stays int-or-string, so a number of bytes is still accepted (next test)."""
    explain = kubectl(control_plane, "explain",
                      "loraadapter.spec.schedulingConfig.resourceRequirements").stdout
    assert "memory\t<string>" in explain and "<Object>" not in explain.split("FIELDS:")[1]
    assert "quantity" in explain
    doc = json.loads(kubectl(control_plane, "get", "--raw",
                             f"/openapi/v3/apis/{GROUP}/{VERSION}").stdout)
    schema = next(v for k, v in doc["components"]["schemas"].items() if k.endswith(".LoraAdapter"))
    memory = (schema["properties"]["spec"]["properties"]["schedulingConfig"]["properties"]
              ["resourceRequirements"]["properties"]["memory"])
    assert memory["type"] == "string" and memory["x-kubernetes-int-or-string"] is True


@pytest.mark.parametrize("memory", ["2Gi", "512M", 1073741824, "1e9"])
def test_memory_as_quantity_or_bytes(control_plane: ControlPlane, namespace: str,
                                     memory: str | int) -> None:
    obj = _with("spec.schedulingConfig", {"resourceRequirements": {"memory": memory}})
    kubectl(control_plane, "create", "-n", namespace, "-f", "-", input=json.dumps(obj))
    got = LoraAdapter.model_validate(kubectl_json(control_plane, "get", "loraadapter", "-n",
                                                  namespace, "x"))
    req = got.spec.scheduling().resource_requirements
    assert req is not None and req.memory == memory


async def test_status_round_trips_and_spec_is_ignored_on_status(
    control_plane: ControlPlane, namespace: str, api_client: k8s_client.ApiClient
) -> None:
    api = k8s_client.CustomObjectsApi(api_client)
    created = await api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body=copy.deepcopy(VALID), _request_timeout=10
    )
    cr = LoraAdapter.model_validate(created)
    status = LoraAdapterStatus.model_validate({
        "phase": "Partial",
        "loadedAdapters": ["lora-a"],
        "failedAdapters": [{"name": "lora-b", "reason": "needs 2Gi, largest free capacity 1536Mi"}],
        "podAssignments": [{"pod": "vllm-0", "adapters": ["lora-a"]}],
        "conditions": [{"type": "Ready", "status": "False", "reason": "Partial",
                        "message": "1 of 2 adapters loaded", "lastTransitionTime":
                        "2026-01-01T00:00:00Z", "observedGeneration": 1}],
        "observedGeneration": 1, "desiredCount": 2, "loadedCount": 1, "failedCount": 1,
    })
    body = cr.status_patch(status)
    body["spec"] = {"baseModel": "changed-through-status"}
    updated = await api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "x", body=body, _request_timeout=10,
        _content_type="application/merge-patch+json",
    )
    got = LoraAdapter.model_validate(updated)
    assert got.status == status
    assert got.status is not None and got.status.phase is Phase.PARTIAL
    assert got.spec.base_model == "tiny-llama", "a spec change sent to /status must be ignored"
    fetched = LoraAdapter.model_validate(await api.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "x", _request_timeout=10))
    assert fetched.status == status
    # A status change sent to the main resource is ignored too.
    await api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "x", body={"status": {"phase": "Failed"}},
        _request_timeout=10, _content_type="application/merge-patch+json")
    again = LoraAdapter.model_validate(await api.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "x", _request_timeout=10))
    assert again.status is not None and again.status.phase is Phase.PARTIAL


def test_unknown_future_fields_do_not_break_the_models() -> None:
    obj = copy.deepcopy(VALID)
    obj["spec"]["futureField"] = {"x": 1}
    obj["spec"]["adapterSource"]["futureKnob"] = True
    obj["status"] = {"phase": "Ready", "futureStatus": [1, 2]}
    parsed = LoraAdapter.model_validate(obj)
    assert parsed.spec.adapter_source.repository == "s3://bucket/prefix"
    assert parsed.status is not None and parsed.status.phase is Phase.READY


def test_user_without_rights_is_refused(control_plane: ControlPlane, namespace: str) -> None:
    for verb in (["get", "loraadapters"], ["get", "pods"], ["get", "secrets"]):
        proc = kubectl(control_plane, *verb, "-n", namespace, user=True, check=False)
        assert proc.returncode != 0
        assert 'User "alice" cannot list resource' in proc.stderr, proc.stderr
    proc = kubectl(control_plane, "create", "-n", namespace, "-f", "-", input=json.dumps(VALID),
                   user=True, check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower()
    # What RBAC grants, it allows: bind a read-only role and the same user may list.
    kubectl(control_plane, "create", "role", "lora-reader", "-n", namespace,
            "--verb=get,list", f"--resource={PLURAL}.{GROUP}")
    kubectl(control_plane, "create", "rolebinding", "alice-reads", "-n", namespace,
            "--role=lora-reader", "--user=alice")
    proc = kubectl(control_plane, "get", "loraadapters", "-n", namespace, user=True, check=False)
    assert proc.returncode == 0, proc.stderr
    proc = kubectl(control_plane, "get", "pods", "-n", namespace, user=True, check=False)
    assert proc.returncode != 0
