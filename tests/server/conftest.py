"""A controller process per test module, serving one namespace and guarding its router API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from lora_controller.devenv.controlplane import ControlPlane
from tests.e2e.harness import ControllerProcess, write_adapters
from tests.server.router import API_KEY, TOKEN, Router, apply_adapter
from tests.support.controlplane import kubectl


@pytest.fixture(scope="module", params=["console", "json"])
def router(request: pytest.FixtureRequest, control_plane: ControlPlane,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    tmp = tmp_path_factory.mktemp("router")
    served, other = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    write_adapters(tmp / "adapters", ["lora-a"])
    for ns in (served, other):
        kubectl(control_plane, "create", "namespace", ns)
        apply_adapter(control_plane, ns, tmp / "adapters")
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "api-key").write_text(API_KEY + "\n")
    ctl = ControllerProcess(control_plane, namespace=served, store=tmp / "store",
                            log_path=tmp / "controller.log",
                            extra=["--no-leader-elect", "--log-format", request.param,
                                   "--router-token-file", str(tmp / "token"),
                                   "--vllm-api-key-file", str(tmp / "api-key")])
    started = time.monotonic()
    ctl.start()
    try:
        asyncio.run(ctl.wait_ready())
        yield Router(ctl, served, other, started)
    finally:
        ctl.stop()
        for ns in (served, other):
            kubectl(control_plane, "delete", "namespace", ns, "--wait=false", check=False)


