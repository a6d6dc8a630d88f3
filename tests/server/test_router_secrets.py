"""No credential reaches the controller's log, in either log format and at debug level, whatever
a client sends: the router token, the vLLM API key, a wrong token."""

from __future__ import annotations

import pytest

from lora_controller.server.protocol import REFUSED
from tests.server.router import API_KEY, HOSTILE, TOKEN, Router, get, raw

pytestmark = [pytest.mark.k8s]


def test_no_credential_in_any_log_line(router: Router) -> None:
    """Stops the controller, so that its log is read whole, shutdown included."""
    for data in HOSTILE:
        raw(router, data)
    assert get(router, "/v1/adapters", token="wrong-token-abcdefgh").status == 401
    assert get(router, "/v1/adapters").status == 200
    assert router.ctl.stop() == 0
    log = router.log()
    assert "router API listening" in log and "stopped" in log, log[-2000:]
    assert REFUSED in log, log[-2000:]
    for secret in (TOKEN, API_KEY, "wrong-token-abcdefgh"):
        assert secret not in log, [ln for ln in log.splitlines() if secret in ln][:3]
