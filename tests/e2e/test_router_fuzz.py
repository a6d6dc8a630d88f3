"""The router API under generated input: schemathesis against its own OpenAPI document finds no
server error and no answer that breaks the document; oversized and malformed values get 4xx, and
requests over the HTTP server's own limits the API's JSON 400."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from lora_controller.devenv.adapters import write_adapter
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.kubectl import kubectl
from lora_controller.server.openapi import OPENAPI

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def router(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("router")
    ns = f"t-{uuid.uuid4().hex[:10]}"
    kubectl(control_plane, "create", "namespace", ns)
    for name in ("lora-a", "lora-b"):
        write_adapter(tmp / "adapters" / name, base_model="tiny-llama")
    kubectl(control_plane, "apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "production-stack.vllm-project/v1alpha1", "kind": "LoraAdapter",
        "metadata": {"name": "fuzz"},
        "spec": {"baseModel": "tiny-llama",
                 "adapterSource": {"type": "local", "repository": str(tmp / "adapters")}}}))
    ctl = ControllerProcess(control_plane, namespace=ns, store=tmp / "store",
                            log_path=tmp / "controller.log", extra=["--no-leader-elect"])
    ctl.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(ctl.url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, ctl.tail()
        time.sleep(0.1)
    try:
        yield ctl.url
    finally:
        ctl.kill()
        assert "Traceback" not in Path(tmp / "controller.log").read_text()


def test_served_document_is_the_one_tested(router: str) -> None:
    with urllib.request.urlopen(router + "/openapi.json", timeout=5) as r:
        assert json.loads(r.read()) == OPENAPI


@schema.parametrize()
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_no_server_error_and_answers_match_the_document(case: schemathesis.Case, router: str) -> None:
    response = case.call(base_url=router, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                              content_type_conformance, response_schema_conformance])


@pytest.mark.parametrize("path", [
    "/v1/adapters?baseModel=" + "x" * 5000,
    "/v1/adapters?namespace=Not_A_Namespace",
    "/v1/adapters?namespace=a&namespace=b",
    "/v1/adapters/%00bad/pods",
    "/v1/adapters/" + "a" * 300 + "/pods",
    "/v1/adapters/lora-a/pods?ensure=perhaps",
    "/v1/pods/UPPER/p/adapters",
    "/v1/loraadapters/ns/..%2F..%2Fetc",
    "/v1/adapters?baseModel=%ff%fe",
])
def test_malformed_values_get_4xx_with_a_reason(router: str, path: str) -> None:
    try:
        with urllib.request.urlopen(router + path, timeout=5) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    assert 400 <= status < 500, (status, body[:300])
    assert json.loads(body)["error"]["reason"]


@pytest.mark.parametrize(("path", "headers"), [
    ("/v1/adapters?baseModel=" + "x" * 20000, {}),
    ("/v1/adapters", {"X-Big": "a" * 9000}),
    ("/v1/adapters", {"X-" + "n" * 9000: "1"}),
])
def test_requests_over_the_server_limits_get_a_json_400(
        router: str, path: str, headers: dict[str, str]) -> None:
    """aiohttp refuses these before any route runs; the answer is still the API's JSON error (and
    the fixture's teardown finds no traceback in the controller's log)."""
    request = urllib.request.Request(router + path, headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert refused.value.headers["Content-Type"].startswith("application/json")
    assert json.loads(refused.value.read())["error"]["reason"] == "RequestTooLarge"
