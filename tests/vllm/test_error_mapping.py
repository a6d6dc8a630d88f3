"""The client's mapping of answers to outcomes, driven by the recorded exchanges of a real vLLM 0.32.

The expected outcome of each recorded load/unload is derived from the request and the group's state
(which fixture the path names, what was registered before), not from the recorded answer, and is
checked against `classify` of the recorded answer, in the nested shape (0.10.2+) and in the flat
shape older releases send; a rank error is also checked with the 400 status of 0.10-0.11.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lora_controller.vllm.errors import (
    AdapterInvalid,
    NameConflict,
    Operation,
    RequestRejected,
    RuntimeUpdatesDisabled,
    TransientError,
    Unauthorized,
    VllmError,
    classify,
    parse_error_body,
)
from tests.vllm import conformance

GROUPS = conformance.load_exchanges(conformance.conformance_dir())
FIXTURE_EXPECTATIONS: dict[str, tuple[type[VllmError], str]] = {
    "does-not-exist": (AdapterInvalid, "no adapter found at"),
    "lora-r16": (AdapterInvalid, "rank 16 exceeds the pod's max_lora_rank 8"),
    "lora-noweights": (AdapterInvalid, "no weights file"),
    "lora-badconfig": (AdapterInvalid, "not valid JSON"),
}


def _cases() -> list[tuple[str, dict[str, Any], type[VllmError] | None, str]]:
    """(case id, exchange, expected error class or None for success, expected reason fragment)."""
    cases: list[tuple[str, dict[str, Any], type[VllmError] | None, str]] = []
    for group, items in GROUPS.items():
        runtime_on = "--no-runtime-lora-updating" not in conformance.simulator_argv(
            group, model_dir="/m", directory=conformance.conformance_dir()
        )[0]
        registered: set[str] = set()
        for ex in items:
            req = ex["request"]
            is_load = req["path"] in ("/v1/load_lora_adapter", "/adapters") and req["method"] == "POST"
            is_unload = req["path"] == "/v1/unload_lora_adapter" or (
                req["method"] == "DELETE" and req["path"].startswith("/adapters/"))
            if not (is_load or is_unload):
                continue
            body = req.get("json")
            case_id = f"{group}#{ex['seq']}-{ex['name']}"
            if req["path"].startswith("/adapters"):
                name = body["name"] if body else req["path"].rsplit("/", 1)[-1]
                path = body.get("src") if body else None
            else:
                name = body.get("lora_name") if isinstance(body, dict) else None
                path = body.get("lora_path") if isinstance(body, dict) else None
            expected: type[VllmError] | None
            fragment = ""
            alias_delete = req["method"] == "DELETE"
            if not runtime_on:
                expected = RuntimeUpdatesDisabled
            elif alias_delete:
                expected = None
            elif not isinstance(body, dict) or req["headers"].get("Content-Type") != "application/json" or (is_load and ("lora_path" not in body and "src" not in body)) or (is_unload and "lora_name" not in body and not req["path"].startswith("/adapters/")) or not name or (is_load and not path):
                expected = RequestRejected
            elif is_unload:
                expected = None
                registered.discard(name)
            elif name == "{MODEL}":
                expected = NameConflict
            elif name in registered and not body.get("load_inplace"):
                expected = None
            else:
                fixture = str(path).rsplit("/", 1)[-1]
                if fixture in FIXTURE_EXPECTATIONS:
                    expected, fragment = FIXTURE_EXPECTATIONS[fixture]
                else:
                    expected = None
                    registered.add(name)
            cases.append((case_id, ex, expected, fragment))
    return cases


CASES = _cases()


def _flat(text: str) -> str:
    data = json.loads(text)
    inner = data["error"]
    return json.dumps({"object": "error", **inner})


def _answer_text(response: dict[str, Any]) -> str:
    if "json" in response:
        return json.dumps(response["json"])
    return str(response.get("text", ""))


def test_every_load_and_unload_recording_is_covered() -> None:
    assert len(CASES) >= 20
    assert {c[2] for c in CASES} >= {None, AdapterInvalid, NameConflict, RequestRejected, RuntimeUpdatesDisabled}


@pytest.mark.parametrize(("case_id", "exchange", "expected", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_recorded_answer_maps_to_expected_outcome(
    case_id: str, exchange: dict[str, Any], expected: type[VllmError] | None, fragment: str
) -> None:
    req, resp = exchange["request"], exchange["response"]
    op = Operation.LOAD if req["method"] == "POST" and "unload" not in req["path"] else Operation.UNLOAD
    body = req.get("json") if isinstance(req.get("json"), dict) else {}
    path = body.get("lora_path") or body.get("src")
    shapes = [_answer_text(resp)]
    if "json" in resp and "error" in resp["json"]:
        shapes.append(_flat(shapes[0]))  # the same answer from vLLM < 0.10.2
    for text in shapes:
        error = classify(operation=op, status=resp["status"], body=text, name=body.get("lora_name"), path=path)
        if expected is None:
            assert error is None, f"{case_id}: {error!r}"
        else:
            assert type(error) is expected, f"{case_id}: got {error!r}"
            assert fragment in error.reason
            if path and expected is AdapterInvalid and "no adapter" in fragment:
                assert path in error.reason


def test_rank_error_as_400_of_older_releases() -> None:
    body = {"object": "error", "message": "LoRA rank 64 is greater than max_lora_rank 16.",
            "type": "BadRequestError", "param": None, "code": 400}
    error = classify(operation=Operation.LOAD, status=400, body=json.dumps(body), name="x", path="/p")
    assert isinstance(error, AdapterInvalid) and error.reason == "rank 64 exceeds the pod's max_lora_rank 16"


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (500, '{"error":{"message":"Call to add_lora method failed: Worker failed with error \'CUDA out of memory\', '
              'please check the stack trace above for the root cause","type":"InternalServerError","param":null,'
              '"code":500}}', TransientError),
        (503, "", TransientError),
        (502, "<html>bad gateway</html>", TransientError),
        (401, '{"error":"Unauthorized"}', Unauthorized),
        (500, '{"error":{"message":"Call to add_lora method failed: Worker failed with error \'vLLM does not yet '
              'support DoRA.\', please check the stack trace above for the root cause","type":"InternalServerError",'
              '"param":null,"code":500}}', AdapterInvalid),
        (400, '{"object":"error","message":"The lora adapter \'a\' has already beenloaded.","type":"BadRequestError",'
              '"param":null,"code":400}', type(None)),
    ],
)
def test_other_answers(status: int, text: str, expected: type) -> None:
    error = classify(operation=Operation.LOAD, status=status, body=text, name="a", path="/x")
    assert type(error) is expected


def test_unload_not_found_in_older_flat_shape_is_success() -> None:
    text = '{"object":"error","message":"The lora adapter \'c\' cannot be found.","type":"NotFoundError","code":404}'
    assert classify(operation=Operation.UNLOAD, status=404, body=text, name="c") is None


def test_parse_error_body_shapes() -> None:
    assert parse_error_body('{"detail":"Not Found"}').shape == "detail"
    nested = parse_error_body('{"error":{"message":"m","type":"T","param":null,"code":404}}')
    assert (nested.shape, nested.message, nested.type, nested.code) == ("nested", "m", "T", 404)
    flat = parse_error_body('{"object":"error","message":"m","type":"T","param":null,"code":400}')
    assert (flat.shape, flat.code) == ("flat", 400)
    assert parse_error_body("plain words").message == "plain words"


@pytest.mark.parametrize("body", ["[" * 100_000, '{"error": ' * 50_000])
def test_a_hostile_error_body_is_text_not_a_crash(body: str) -> None:
    error = classify(operation=Operation.LOAD, status=500, body=body, name="a", path="/a")
    assert isinstance(error, TransientError)
    assert len(error.reason) <= 500
