"""Bounded reads: no source, file or server can make the controller read more than it allows.

Configs are refused by their listed size before any read, every read stops at the listed size (and
at MAX_CONFIG_BYTES), and a server or file that sends more than it listed fails that adapter. Local
files are opened without following links and must be regular files (a FIFO or /dev/zero swapped in
after the listing). Memory is watched with tracemalloc: a read of the whole thing would show.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lora_controller.sources.adapter_config import MAX_CONFIG_BYTES
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.discovery import _inspect, discover
from lora_controller.sources.errors import StagingFailed
from lora_controller.sources.local import LocalSource
from lora_controller.sources.model import DiscoveredAdapter, Discovery, SourceOptions
from lora_controller.sources.store import AdapterStore, RetryPolicy
from tests.sources.helpers import spec
from tests.sources.hostile_s3 import HostileS3
from tests.sources.hub_server import HubServer
from tests.support.adapters import adapter_files, under, write_adapter

T = TypeVar("T")
MiB = 1 << 20
GiB = 1 << 30
CREDS = SourceCredentials(secret_name="aws", aws_access_key_id="AKIAHOSTILE",
                          aws_secret_access_key="hostile-secret")


async def peak(fn: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """`fn()`'s result and the peak of Python memory allocated while it ran (bytes)."""
    tracemalloc.start()
    try:
        result = await fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def errors_of(found: Discovery) -> dict[str, tuple[str, str]]:
    return {e.name: (e.reason, e.message) for e in found.errors}


@pytest.fixture
def short(tmp_path: Path) -> SourceOptions:
    return SourceOptions(request_timeout=3.0, listing_timeout=5.0, download_timeout=10.0,
                         concurrency=4, hf_cache_dir=str(tmp_path / "hf-cache"))


# -- local ------------------------------------------------------------------------------------


async def test_local_oversized_and_sparse_configs_are_refused_unread(
    tmp_path: Path, short: SourceOptions
) -> None:
    root = tmp_path / "vol"
    write_adapter(root / "good")
    write_adapter(root / "big")
    (root / "big" / "adapter_config.json").write_bytes(b" " * (50 * 1000 * 1000) + b"{}")
    write_adapter(root / "sparse")
    with open(root / "sparse" / "adapter_config.json", "r+b") as fh:
        fh.truncate(GiB)
    found, used = await peak(lambda: discover(spec("local", str(root)), namespace="ns",
                                              credentials=None, options=short))
    assert [a.name for a in found.adapters] == ["good"]
    errs = errors_of(found)
    assert errs["big"][0] == errs["sparse"][0] == "InvalidAdapterConfig"
    assert "50000002 bytes" in errs["big"][1] and f"{MAX_CONFIG_BYTES}" in errs["big"][1]
    assert f"{GiB} bytes" in errs["sparse"][1]
    assert used < 8 * MiB, f"discovery allocated {used} bytes: a config was read whole"


async def _swap_then_inspect(root: Path, swap: Callable[[Path], None],
                             options: SourceOptions) -> Any:
    """List the source, replace the config with `swap`, then inspect the adapter."""
    reader = LocalSource(str(root), options=options)
    [cand] = await reader.candidates()
    swap(root / "a" / "adapter_config.json")
    return await asyncio.wait_for(
        _inspect(reader, "a", cand, spec=spec("local", str(root)), endpoint=None), 30)


async def test_config_swapped_for_a_link_to_dev_zero_is_refused(
    tmp_path: Path, short: SourceOptions
) -> None:
    write_adapter(tmp_path / "a")

    def to_dev_zero(p: Path) -> None:
        p.unlink()
        p.symlink_to("/dev/zero")

    got, used = await peak(lambda: _swap_then_inspect(tmp_path, to_dev_zero, short))
    assert not isinstance(got, DiscoveredAdapter)
    assert got.reason == "InvalidAdapterConfig" and "symbolic link" in got.message
    assert used < 8 * MiB


async def test_config_swapped_for_a_fifo_is_refused_without_blocking(
    tmp_path: Path, short: SourceOptions
) -> None:
    write_adapter(tmp_path / "a")
    fifo = tmp_path / "a" / "adapter_config.json"

    def to_fifo(p: Path) -> None:
        p.unlink()
        os.mkfifo(p)

    started = time.monotonic()
    try:
        got = await _swap_then_inspect(tmp_path, to_fifo, short)
        assert not isinstance(got, DiscoveredAdapter)
        assert got.reason == "InvalidAdapterConfig" and "not a regular file" in got.message
        assert time.monotonic() - started < short.request_timeout
    finally:
        # No thread may be left blocked opening the FIFO: a writer finds no reader.
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO
        else:
            os.close(fd)
            pytest.fail("a thread was left blocked in open() on the FIFO")


async def test_config_that_grows_after_listing_is_cut_at_the_listed_size(
    tmp_path: Path, short: SourceOptions
) -> None:
    write_adapter(tmp_path / "a")

    def grow(p: Path) -> None:
        with p.open("ab") as fh:
            fh.write(b" " * 4096)

    got = await _swap_then_inspect(tmp_path, grow, short)
    assert not isinstance(got, DiscoveredAdapter)
    assert got.reason == "InvalidAdapterConfig" and "more than the" in got.message


# -- a hostile S3 endpoint ----------------------------------------------------------------------


@pytest.fixture
async def hostile_s3() -> AsyncIterator[HostileS3]:
    server = HostileS3()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.usefixtures("s3_env")
async def test_s3_config_listed_small_streamed_huge_is_cut(
    hostile_s3: HostileS3, short: SourceOptions
) -> None:
    for name in ("good", "chunked", "claims", "listed-big"):
        hostile_s3.put_files("lies", f"p/{name}", adapter_files())
    config = adapter_files()["adapter_config.json"]
    hostile_s3.put("lies", "p/chunked/adapter_config.json", config, stream_bytes=GiB)
    hostile_s3.put("lies", "p/claims/adapter_config.json", config, claim_length=GiB)
    hostile_s3.put("lies", "p/listed-big/adapter_config.json", b" " * (2 * MiB))
    found, used = await peak(lambda: discover(
        spec("s3", "s3://lies/p", endpoint=hostile_s3.url, region="us-east-1"),
        namespace="ns", credentials=CREDS, options=short))
    assert [a.name for a in found.adapters] == ["good"]
    errs = errors_of(found)
    assert {n: r for n, (r, _) in errs.items()} == dict.fromkeys(
        ["chunked", "claims", "listed-big"], "InvalidAdapterConfig")
    assert "more than the" in errs["chunked"][1] and "more than the" in errs["claims"][1]
    assert str(2 * MiB) in errs["listed-big"][1]
    assert not any("listed-big/adapter_config.json" in p for m, p in hostile_s3.requests
                   if m == "GET"), "a config listed above the limit was downloaded"
    assert hostile_s3.sent.get("p/chunked/adapter_config.json", 0) < 64 * MiB
    assert used < 64 * MiB, f"discovery allocated {used} bytes"


@pytest.mark.usefixtures("s3_env")
async def test_s3_staging_stops_at_the_listed_size(
    hostile_s3: HostileS3, short: SourceOptions, tmp_path: Path
) -> None:
    hostile_s3.put_files("lies", "p/a", adapter_files())
    found = await discover(spec("s3", "s3://lies/p", endpoint=hostile_s3.url, region="us-east-1"),
                           namespace="ns", credentials=CREDS, options=short)
    [adapter] = found.adapters
    weights = adapter_files()["adapter_model.safetensors"]
    hostile_s3.put("lies", "p/a/adapter_model.safetensors", weights, stream_bytes=GiB)
    store = AdapterStore(tmp_path / "store", options=short, retry=RetryPolicy(attempts=1))
    with pytest.raises(StagingFailed) as info:
        await store.stage(adapter, namespace="ns", cr="cr", credentials=CREDS)
    assert "more than the" in info.value.message
    assert hostile_s3.sent["p/a/adapter_model.safetensors"] < 64 * MiB
    assert not any((tmp_path / "store").rglob("adapter_model.safetensors"))


# -- a hostile hub ------------------------------------------------------------------------------


async def test_hub_config_streamed_beyond_its_listed_size_is_cut(
    hub: HubServer, short: SourceOptions
) -> None:
    hub.add_repo("org/r", {**under("good", adapter_files()), **under("bad", adapter_files())})
    hub.oversize["org/r/bad/adapter_config.json"] = GiB
    found, used = await peak(lambda: discover(spec("huggingface", "org/r"), namespace="ns",
                                              credentials=None, options=short))
    assert [a.name for a in found.adapters] == ["good"]
    reason, message = errors_of(found)["bad"]
    assert reason == "InvalidAdapterConfig" and "more than the" in message
    assert hub.bytes_sent["org/r/bad/adapter_config.json"] < 64 * MiB
    assert used < 64 * MiB, f"discovery allocated {used} bytes"


# -- the adapter store's own reads --------------------------------------------------------------


async def test_store_does_not_follow_a_link_planted_in_a_staged_version(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    files = adapter_files()
    hub.add_repo("org/r", files)
    [adapter] = (await discover(spec("huggingface", "org/r"), namespace="ns", credentials=None,
                                options=options)).adapters
    store = AdapterStore(tmp_path / "store", options=options)
    final = await store.stage(adapter, namespace="ns", cr="cr", credentials=None)
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(b"\0" * len(files["adapter_model.safetensors"]))
    planted = final / "adapter_model.safetensors"
    planted.unlink()
    planted.symlink_to(elsewhere)
    again = await store.stage(adapter, namespace="ns", cr="cr", credentials=None)
    weights = again / "adapter_model.safetensors"
    assert not weights.is_symlink()
    assert weights.read_bytes() == files["adapter_model.safetensors"]

