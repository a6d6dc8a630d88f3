"""What the log renderer lets through: no local variable of a traceback, no registered credential
(files given on the command line, keys read from a source's Secret), nothing shaped like a bearer
token, in either format and at every level.

Each case runs in a child interpreter, as the controller does, so that configuring the process's
logging does not touch the test run's own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.harness import REPO

SECRET = "rtok-9f8e7d6c5b4a39281706"
UNREGISTERED = "zz-unregistered-0123456789abcdef"
LOCAL = "local-only-value-31415926"
S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRET"

PROGRAM = f"""
import logging, sys
import structlog
from lora_controller.cli.logging import configure_logging
from lora_controller.core.redaction import register_secret

configure_logging(fmt=sys.argv[1], level="debug")
if sys.argv[2] == "register":
    register_secret({SECRET!r})
    from lora_controller.api.types import CredentialsSecretRef, SourceType
    from lora_controller.sources.credentials import credentials_from_secret
    credentials_from_secret({{"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
                              "AWS_SECRET_ACCESS_KEY": {S3_SECRET!r}}},
                            ref=CredentialsSecretRef(name="s3"), source_type=SourceType.S3,
                            namespace="ns")
log = structlog.get_logger("test")
std = logging.getLogger("aiohttp.server")

def parse(data):
    token = {LOCAL!r}
    raise ValueError("cannot parse " + repr(data[:20]))

if sys.argv[2] == "register":
    for level in ("debug", "info", "warning", "error"):
        getattr(log, level)("event " + {SECRET!r}, value={SECRET!r})
        std.log(logging.getLevelName(level.upper()), "stdlib %s", {SECRET!r})
    log.info("client sent", header="Authorization: Bearer {UNREGISTERED}")
    log.warning("s3 said", detail="key " + {S3_SECRET!r})
try:
    parse(b"GET / HTTP/1.1 " + {SECRET!r}.encode())
except ValueError:
    std.exception("Error handling request from %s", "127.0.0.1")
    log.exception("handler failed")
"""


def render(fmt: str, mode: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROGRAM, fmt, mode], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ValueError" in proc.stderr and "handler failed" in proc.stderr, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_traceback_never_shows_local_variables(fmt: str) -> None:
    out = render(fmt, "plain")
    assert LOCAL not in out, out


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_registered_and_credential_shaped_values_are_redacted(fmt: str) -> None:
    out = render(fmt, "register")
    assert SECRET not in out, out
    assert UNREGISTERED not in out, out
    assert S3_SECRET not in out, out
    assert out.count("***") >= 10, out
