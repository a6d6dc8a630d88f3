"""Oversized and malformed requests get a JSON error and at most a rate-limited warning line
without their bytes; 405 names the allowed methods; a namespace this controller does not serve is
said to be so."""

from __future__ import annotations

import time

import pytest

from lora_controller.server.protocol import REFUSED, REFUSED_INTERVAL
from tests.server.router import AUTH, BIG, HOSTILE, TOKEN, Router, get, raw

pytestmark = [pytest.mark.k8s]


@pytest.mark.parametrize("number", range(len(HOSTILE)))
def test_hostile_requests_get_a_json_4xx(router: Router, number: int) -> None:
    answer = raw(router, HOSTILE[number])
    assert 400 <= answer.status < 500, answer
    assert answer.json()["error"]["reason"], answer
    assert TOKEN.encode() not in answer.body


def test_oversized_requests_get_json_and_one_rate_limited_warning(router: Router) -> None:
    for _ in range(10):
        for path in ("/v1/adapters?baseModel=" + "x" * 20000, "/v1/adapters"):
            big = "" if "x" * 100 in path else f"X-Big: {'a' * BIG}\r\n"
            answer = raw(router, f"GET {path} HTTP/1.1\r\n{AUTH}{big}\r\n".encode())
            assert answer.status == 400, answer
            error = answer.json()["error"]
            assert error["reason"] == "RequestTooLarge" and "8190" in error["message"], error
    time.sleep(0.5)
    log = router.log()
    lines = [ln for ln in log.splitlines() if REFUSED in ln]
    elapsed = time.monotonic() - router.started
    assert 1 <= len(lines) <= 1 + elapsed // REFUSED_INTERVAL, lines
    assert all("warn" in ln.lower() for ln in lines), lines
    assert "Traceback" not in log and "LineTooLong" not in log


def test_405_names_the_allowed_methods(router: Router) -> None:
    for path in ("/v1/adapters", f"/v1/loraadapters/{router.served}/example-adapter", "/healthz"):
        answer = get(router, path, method="DELETE")
        assert answer.status == 405, answer
        assert set(answer.headers["allow"].split(",")) == {"GET", "HEAD"}, answer.headers
        assert answer.json()["error"]["reason"] == "MethodNotAllowed"


def test_a_namespace_not_served_is_said_to_be_so(router: Router) -> None:
    ok = get(router, f"/v1/loraadapters/{router.served}/example-adapter")
    assert ok.status == 200 and ok.json()["name"] == "example-adapter", ok
    for path in (f"/v1/loraadapters/{router.other}/example-adapter",
                 f"/v1/loraadapters/{router.other}/no-such-adapter",
                 f"/v1/adapters?namespace={router.other}",
                 f"/v1/adapters?baseModel=tiny-llama&namespace={router.other}",
                 f"/v1/adapters/lora-a/pods?namespace={router.other}",
                 f"/v1/adapters/lora-a/pods?namespace={router.other}&ensure=true",
                 f"/v1/pods/{router.other}/vllm-0/adapters"):
        answer = get(router, path)
        assert answer.status == 404, (path, answer)
        error = answer.json()["error"]
        assert error["reason"] == "NamespaceNotServed", (path, error)
        assert router.other in error["message"] and router.served in error["message"], error
    missing = get(router, f"/v1/loraadapters/{router.served}/no-such-adapter")
    assert missing.json()["error"]["reason"] == "LoraAdapterNotFound"
