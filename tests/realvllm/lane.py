"""What every real-vLLM test needs: the environment's python (or a clear failure), the conformance
fixtures, and small HTTP helpers that ask a real server directly (never the controller's view).

The lane is part of the default test command. Without $LORA_VLLM_PYTHON (exported by `hack/test`
from `hack/vllm-real`) its tests FAIL saying how to fix it; only LORA_SKIP_REAL_VLLM=1, set by a
person on purpose, turns them into skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lora_controller.devenv import realvllm

OPT_OUT = "LORA_SKIP_REAL_VLLM"
TIMEOUT = aiohttp.ClientTimeout(total=60)


def require_vllm_python() -> str:
    """The real-vLLM python, or a failed (not skipped) test that says what to run."""
    if os.environ.get(OPT_OUT) == "1":
        pytest.skip(f"real vLLM lane switched off by {OPT_OUT}=1")
    try:
        return realvllm.vllm_python()
    except RuntimeError as exc:
        pytest.fail(f"{exc} (or set {OPT_OUT}=1 to skip the real-vLLM tests on purpose)",
                    pytrace=False)


async def adapter_ids(base_url: str) -> list[str]:
    """The adapters a real server lists on `/v1/models`, in its order (the base model left out)."""
    async with aiohttp.ClientSession() as s, s.get(base_url + "/v1/models", timeout=TIMEOUT) as r:
        assert r.status == 200, await r.text()
        data = (await r.json())["data"]
    return [m["id"] for m in data if m.get("parent")]


async def complete(base_url: str, model: str) -> tuple[int, Any]:
    """A real completion naming `model` (an adapter or the base model): status and body."""
    body = {"model": model, "prompt": "hello world", "max_tokens": 4, "temperature": 0}
    async with aiohttp.ClientSession() as s, s.post(base_url + "/v1/completions", json=body,
                                                    timeout=TIMEOUT) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def load(base_url: str, name: str, path: str) -> tuple[int, str]:
    """`POST /v1/load_lora_adapter` as a person with curl would (not through the controller)."""
    async with aiohttp.ClientSession() as s, s.post(
            base_url + "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path},
            timeout=TIMEOUT) as r:
        return r.status, await r.text()


async def unload_all(base_url: str) -> None:
    """Leave a shared server as it started: no adapter registered."""
    async with aiohttp.ClientSession() as s:
        for name in await adapter_ids(base_url):
            async with s.post(base_url + "/v1/unload_lora_adapter", json={"lora_name": name},
                              timeout=TIMEOUT) as r:
                assert r.status in (200, 404), await r.text()


async def wait_until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.2)


def metric(text: str, name: str, labels: str = "") -> float:
    """The sum of a metric's samples in Prometheus text whose labels contain `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


def load_answers(log_text: str) -> list[int]:
    """Statuses of `POST /v1/load_lora_adapter` in a vLLM server's access log, in order."""
    return [int(m) for m in re.findall(r'"POST /v1/load_lora_adapter HTTP/1\.1" (\d{3})', log_text)]


class LogMark:
    """What a server's log gained since this mark was taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def since(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")
