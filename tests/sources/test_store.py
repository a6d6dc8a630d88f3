"""The adapter store: atomic, verified, idempotent staging from the fake hub and moto; gc."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.discovery import discover
from lora_controller.sources.errors import InvalidSource, SourceUnreachable, StagingFailed
from lora_controller.sources.model import AdapterFile, DiscoveredAdapter, SourceOptions
from lora_controller.sources.store import AdapterStore, RetryPolicy
from tests.sources.helpers import spec
from tests.sources.hub_server import HubServer
from tests.sources.s3_server import REGION, MotoS3
from tests.support.adapters import adapter_files, under

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


async def hf_adapters(options: SourceOptions, repo: str = "org/r") -> dict[str, DiscoveredAdapter]:
    found = await discover(spec("huggingface", repo), namespace="ns", credentials=None,
                           options=options)
    return {a.name: a for a in found.adapters}


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


async def test_hf_stage_layout_contents_modes_and_idempotence(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    files = adapter_files(seed=5)
    hub.add_repo("org/r", {**under("a", files), **under("b/c", adapter_files(seed=6)),
                           "README.md": b"x"})
    adapters = await hf_adapters(options)
    store = AdapterStore(tmp_path / "store", max_concurrent_downloads=2, options=options)
    old = os.umask(0o077)
    try:
        path = await store.stage(adapters["a"], namespace="team", cr="my-loras", credentials=None)
    finally:
        os.umask(old)
    assert path == tmp_path / "store" / "team" / "my-loras" / "a" / adapters["a"].version
    assert path == store.path_for(namespace="team", cr="my-loras", adapter="a",
                                  version=adapters["a"].version)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == files
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in path.iterdir()} == {0o644}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert listing(path.parent) == [path.name, *(f"{path.name}/{n}" for n in sorted(files))]
    before = len(hub.requests)
    assert await store.stage(adapters["a"], namespace="team", cr="my-loras",
                             credentials=None) == path
    assert len(hub.requests) == before  # already staged: no request at all
    nested = await store.stage(adapters["b-c"], namespace="team", cr="my-loras", credentials=None)
    assert sorted(p.name for p in nested.iterdir()) == sorted(files)


async def test_concurrent_stages_of_one_version_download_once(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    hub.add_repo("org/r", adapter_files())
    adapter = (await hf_adapters(options))["r"]
    store = AdapterStore(tmp_path, options=options)
    paths = await asyncio.gather(*(store.stage(adapter, namespace="n", cr="c", credentials=None)
                                   for _ in range(4)))
    assert len(set(paths)) == 1
    gets = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p
            and p.endswith("adapter_model.safetensors")]
    assert len(gets) == 1


async def test_broken_staged_version_is_replaced(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    files = adapter_files()
    hub.add_repo("org/r", files)
    adapter = (await hf_adapters(options))["r"]
    store = AdapterStore(tmp_path, options=options)
    path = await store.stage(adapter, namespace="n", cr="c", credentials=None)
    (path / "adapter_model.safetensors").write_bytes(b"truncated")
    assert await store.stage(adapter, namespace="n", cr="c", credentials=None) == path
    assert (path / "adapter_model.safetensors").read_bytes() == files["adapter_model.safetensors"]


KILL_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from lora_controller.sources.discovery import discover
    from lora_controller.sources.model import SourceOptions
    from lora_controller.sources.store import AdapterStore
    from tests.sources.helpers import spec

    async def main():
        opts = SourceOptions(hf_cache_dir=sys.argv[2])
        found = await discover(spec("huggingface", "org/big"), namespace="ns", credentials=None,
                               options=opts)
        store = AdapterStore(Path(sys.argv[1]), options=opts)
        await store.stage(found.adapters[0], namespace="ns", cr="cr", credentials=None)
        print("finished", flush=True)

    asyncio.run(main())
""")


async def test_killed_download_leaves_nothing_visible_and_the_next_attempt_succeeds(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    files = adapter_files(hidden=1024, seed=11)  # ~260 KiB of weights, sent 16 KiB at a time
    hub.add_repo("org/big", files)
    weights_key = "org/big/adapter_model.safetensors"
    size = len(files["adapter_model.safetensors"])
    hub.chunk_delay = 0.05
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_ENDPOINT": hub.url}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILL_SCRIPT, str(root), str(tmp_path / "child-cache"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(60):
            while hub.bytes_sent.get(weights_key, 0) < size // 3:
                await asyncio.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        out, _ = await child.communicate()
    assert b"finished" not in out
    assert 0 < hub.bytes_sent[weights_key] < size
    adapter = (await hf_adapters(options, "org/big"))["big"]
    adapter_dir = root / "ns" / "cr" / "big"
    # the half-written version is a hidden temporary folder: the version folder does not exist
    assert [p.name[:5] for p in adapter_dir.iterdir()] == [".tmp-"]
    assert not (adapter_dir / adapter.version).exists()
    hub.chunk_delay = 0
    store = AdapterStore(root, options=options)
    path = await store.stage(adapter, namespace="ns", cr="cr", credentials=None)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == files
    removed = await store.gc(keep={path}, tmp_grace=0)
    assert [p.name[:5] for p in removed] == [".tmp-"]
    assert [p.name for p in adapter_dir.iterdir()] == [adapter.version]


async def test_cancelled_stage_leaves_nothing_visible(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    files = adapter_files(hidden=512, seed=12)
    hub.add_repo("org/r", files)
    adapter = (await hf_adapters(options))["r"]
    hub.chunk_delay = 0.05
    store = AdapterStore(tmp_path, options=options)
    task = asyncio.create_task(store.stage(adapter, namespace="n", cr="c", credentials=None))
    async with asyncio.timeout(30):
        while hub.bytes_sent.get("org/r/adapter_model.safetensors", 0) == 0:
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    final = store.path_for(namespace="n", cr="c", adapter="r", version=adapter.version)
    assert not final.exists()
    hub.chunk_delay = 0
    path = await store.stage(adapter, namespace="n", cr="c", credentials=None)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == files


async def test_network_failure_mid_download(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    files = adapter_files(hidden=256)
    hub.add_repo("org/r", files)
    adapter = (await hf_adapters(options))["r"]
    store = AdapterStore(tmp_path, options=options, retry=RetryPolicy(attempts=1))
    hub.drop_after = 0  # every download is cut before its first byte
    with pytest.raises(SourceUnreachable) as info:
        await store.stage(adapter, namespace="n", cr="c", credentials=None)
    assert info.value.retryable
    assert [p.name for p in (tmp_path / "n" / "c" / "r").iterdir()] == []
    hub.drop_after = None
    path = await store.stage(adapter, namespace="n", cr="c", credentials=None)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == files


async def test_transient_failures_are_retried_with_backoff(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    files = adapter_files()
    hub.add_repo("org/r", files)
    adapter = (await hf_adapters(options))["r"]
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    store = AdapterStore(tmp_path, options=options, sleep=sleep,
                         retry=RetryPolicy(attempts=4, base_delay=0.2, max_delay=0.3))
    hub.fail_downloads = 3  # the first three GETs answer 503; the library does not retry those
    path = await store.stage(adapter, namespace="n", cr="c", credentials=None)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == files
    assert len(delays) == 3
    assert all(0.1 <= d <= 0.3 for d in delays)
    hub.fail_downloads = 10  # more failures than attempts: the error surfaces, nothing visible
    other = dataclasses.replace(adapter, version="f" * 16)
    with pytest.raises(SourceUnreachable) as info:
        await store.stage(other, namespace="n", cr="c", credentials=None)
    assert "503" in info.value.message
    assert sorted(p.name for p in path.parent.iterdir()) == [adapter.version]


@pytest.mark.usefixtures("s3_env")
async def test_s3_stage_and_changed_content_is_detected(
    moto_s3: MotoS3, options: SourceOptions, tmp_path: Path
) -> None:
    b = moto_s3.bucket()
    files = adapter_files(seed=1)
    moto_s3.put_adapter(b, "p/a", files)
    creds = SourceCredentials(secret_name="aws", aws_access_key_id=moto_s3.access_key,
                              aws_secret_access_key=moto_s3.secret_key)
    found = await discover(spec("s3", f"s3://{b}/p", endpoint=moto_s3.endpoint, region=REGION),
                           namespace="ns", credentials=creds, options=options)
    adapter = found.adapters[0]
    store = AdapterStore(tmp_path, options=options, retry=FAST_RETRY)
    path = await store.stage(adapter, namespace="ns", cr="cr", credentials=creds)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == files
    # the object changes after discovery: the download no longer matches what was listed
    moto_s3.put_adapter(b, "p/a", adapter_files(seed=2, r=16))
    changed = dataclasses.replace(adapter, version="0000000000000000")
    with pytest.raises(StagingFailed) as info:
        await store.stage(changed, namespace="ns", cr="cr", credentials=creds)
    assert "does not match discovery" in info.value.message
    assert sorted(p.name for p in path.parent.iterdir()) == [adapter.version]
    # wrong endpoint at staging time: retryable, nothing visible
    dead = dataclasses.replace(adapter, endpoint="http://127.0.0.1:9", version="1" * 16)
    with pytest.raises(SourceUnreachable):
        await AdapterStore(tmp_path, options=options, retry=RetryPolicy(attempts=1)).stage(
            dead, namespace="ns", cr="cr", credentials=creds)
    assert sorted(p.name for p in path.parent.iterdir()) == [adapter.version]


async def test_gc_removes_unused_versions_within_its_scope(
    hub: HubServer, options: SourceOptions, tmp_path: Path
) -> None:
    hub.add_repo("org/r", adapter_files(seed=1))
    v1 = (await hf_adapters(options))["r"]
    hub.commit("org/r", adapter_files(seed=2))
    v2 = (await hf_adapters(options))["r"]
    store = AdapterStore(tmp_path / "store", options=options)
    stranger = tmp_path / "store" / "n" / "c" / "r" / "not-a-version"
    stranger.mkdir(parents=True)
    p1 = await store.stage(v1, namespace="n", cr="c", credentials=None)
    p2 = await store.stage(v2, namespace="n", cr="c", credentials=None)
    other = await store.stage(v1, namespace="n", cr="other", credentials=None)
    assert await store.gc(keep={p2}, namespace="n", cr="c") == [p1]
    assert p2.is_dir() and other.is_dir() and not p1.exists()
    assert await store.gc(keep={p2}) == [other]
    assert not other.parent.exists()  # the empty adapter folder went too
    assert await store.gc(keep={p2}) == []
    assert stranger.is_dir()  # not shaped like a version: never removed


def test_names_that_would_escape_the_store(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / "store")
    for bad in ("..", "../x", "a/b", "", ".hidden", "x" * 300):
        with pytest.raises(InvalidSource):
            store.path_for(namespace=bad, cr="c", adapter="a", version="v")
        with pytest.raises(InvalidSource):
            store.path_for(namespace="n", cr="c", adapter=bad, version="v")


async def test_file_names_that_would_escape_the_folder(tmp_path: Path) -> None:
    from lora_controller.api.types import SourceType
    from lora_controller.sources.model import AdapterConfig

    cfg = AdapterConfig(r=8, lora_alpha=16, target_modules=("q",), base_model_name_or_path=None,
                        rank=8)
    store = AdapterStore(tmp_path / "store")
    for bad in ("../../evil", "sub/file", ".."):
        adapter: Any = DiscoveredAdapter(
            name="a", source_type=SourceType.S3, location="s3://b/p/a", version="v1",
            files=(AdapterFile(path=bad, size=1),), config=cfg, repository="s3://b/p",
            subfolder="a",
        )
        with pytest.raises(InvalidSource):
            await store.stage(adapter, namespace="n", cr="c", credentials=None)
    assert not (tmp_path / "store").exists() and not (tmp_path / "evil").exists()
