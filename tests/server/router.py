"""The router API as its own process, and requests sent to it as raw bytes.

The controller runs with `--router-token-file`, `--vllm-api-key-file` and `--namespace`, logging at
debug level; every hostile request carries the router token somewhere a careless log would copy it.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_controller.devenv.controlplane import ControlPlane
from tests.e2e.harness import ControllerProcess
from tests.support.controlplane import kubectl
from tests.support.secrets import credential

TOKEN = credential("router-tok-7a1b2c3d4e5f60718293")
API_KEY = credential("vllm-key-0f1e2d3c4b5a69788796")
AUTH = f"Host: router\r\nAuthorization: Bearer {TOKEN}\r\n"


@dataclass
class Router:
    ctl: ControllerProcess
    served: str
    other: str
    started: float

    def log(self) -> str:
        return self.ctl.log_path.read_text(errors="replace")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


def raw(router: Router, data: bytes) -> Answer:
    """Send bytes as they are and read the answer until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", router.ctl.port), timeout=5) as s:
        s.sendall(data)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert match, received[:300]
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return Answer(int(match.group(1)), headers, body)


def get(router: Router, path: str, *, token: str | None = TOKEN, method: str = "GET") -> Answer:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return raw(router, f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
               .encode())


def apply_adapter(cp: ControlPlane, namespace: str, repository: Path) -> None:
    kubectl(cp, "apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "production-stack.vllm-project/v1alpha1", "kind": "LoraAdapter",
        "metadata": {"name": "example-adapter"},
        "spec": {"baseModel": "tiny-llama",
                 "adapterSource": {"type": "local", "repository": str(repository)}}}))


BIG = 9000
HOSTILE: list[bytes] = [
    # The reproduction: the token in one header, a 9 KB header after it.
    f"GET /x HTTP/1.1\r\n{AUTH}X-Big: {'a' * BIG}\r\n\r\n".encode(),
    # The token inside the oversized header line itself, and inside an oversized URL.
    f"GET /v1/adapters HTTP/1.1\r\nAuthorization: Bearer {TOKEN}{'b' * BIG}\r\n\r\n".encode(),
    f"GET /v1/adapters?access_token={TOKEN}&pad={'u' * 20000} HTTP/1.1\r\n{AUTH}\r\n".encode(),
    f"GET /{TOKEN}{'p' * 20000} HTTP/1.1\r\n\r\n".encode(),
    # A header name too long, too many headers, a header line without a colon, a NUL in a value.
    f"GET /v1/adapters HTTP/1.1\r\n{AUTH}X-{TOKEN}{'n' * BIG}: 1\r\n\r\n".encode(),
    ("GET /v1/adapters HTTP/1.1\r\n" + "".join(f"X-{i}: {TOKEN}\r\n" for i in range(300))
     + "\r\n").encode(),
    f"GET /v1/adapters HTTP/1.1\r\n{AUTH}this line has no colon {TOKEN}\r\n\r\n".encode(),
    f"GET /v1/adapters HTTP/1.1\r\nX-Bad: a\x00{TOKEN}\r\n{AUTH}\r\n".encode(),
    # Not HTTP at all: a TLS hello, a method that is not one, a broken version.
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + TOKEN.encode() + b"\r\n\r\n",
    f"{TOKEN} / HTTP/1.1\r\n\r\n".encode(),
    f"GET /v1/adapters HTTP/9.{TOKEN}\r\n{AUTH}\r\n".encode(),
    # Well-formed HTTP with broken bodies.
    f"POST /v1/adapters HTTP/1.1\r\n{AUTH}Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    f"zz{TOKEN}\r\n\r\n".encode(),
    f"POST /v1/adapters HTTP/1.1\r\n{AUTH}Content-Length: -5\r\n\r\n{TOKEN}".encode(),
    f"GET /v1/adapters HTTP/1.1\r\n{AUTH}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab".encode(),
]
