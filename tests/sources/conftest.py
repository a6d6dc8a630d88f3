"""Fixtures of the sources tests: a fake HuggingFace hub per test (HF_ENDPOINT points at it), one
moto S3 server per run, and a structlog capture for the secret-scanning checks."""

from __future__ import annotations

import os

# Before huggingface_hub is imported anywhere: no Xet, no telemetry, no stray token or cache.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.pop("HF_TOKEN", None)

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lora_controller.sources.model import SourceOptions
from tests.sources.hub_server import HubServer
from tests.sources.s3_server import MotoS3


@pytest.fixture
async def hub(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HubServer]:
    """A fresh fake hub; HF_ENDPOINT points at it for the test."""
    server = HubServer(page_size=3)
    url = await server.start()
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    s3 = MotoS3.start()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient AWS credentials unless a test sets them."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture
def options(tmp_path: Path) -> SourceOptions:
    """Short timeouts for loopback services; a hub cache of the test's own."""
    return SourceOptions(request_timeout=10.0, listing_timeout=20.0, download_timeout=30.0,
                         concurrency=4, hf_cache_dir=str(tmp_path / "hf-cache"))
