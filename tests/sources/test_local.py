"""Local discovery through fsspec's local filesystem: real folders on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lora_controller.api.types import SourceType
from lora_controller.sources.discovery import discover
from lora_controller.sources.errors import (
    AccessDenied,
    InvalidSource,
    NoAdaptersMatch,
    SourceNotFound,
)
from lora_controller.sources.model import SourceOptions
from lora_controller.sources.store import AdapterStore
from tests.sources.helpers import spec
from tests.support.adapters import write_adapter


async def test_folders_versions_and_no_copy(tmp_path: Path, options: SourceOptions) -> None:
    root = tmp_path / "vol" / "loras"
    a = write_adapter(root / "alpha", r=4)
    write_adapter(root / "team" / "beta", r=64, seed=3)
    (root / "docs").mkdir()
    (root / "docs" / "README.md").write_text("not an adapter")
    found = await discover(spec("local", str(root)), namespace="ns", credentials=None,
                           options=options)
    assert [x.name for x in found.adapters] == ["alpha", "team-beta"]
    alpha = found.adapters[0]
    assert alpha.source_type is SourceType.LOCAL and alpha.location == str(root / "alpha")
    assert {f.path: f.size for f in alpha.files} == {k: len(v) for k, v in a.items()}
    assert (alpha.rank, found.adapters[1].rank) == (4, 64)
    # staging a local adapter returns its own folder: nothing is copied
    store = AdapterStore(tmp_path / "store")
    assert await store.stage(alpha, namespace="ns", cr="cr", credentials=None) == root / "alpha"
    assert not (tmp_path / "store").exists()
    # rewriting a weight file changes the version; the other adapter keeps its own
    weights = root / "alpha" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0" * 8)
    again = await discover(spec("local", str(root)), namespace="ns", credentials=None,
                           options=options)
    assert again.adapters[0].version != alpha.version
    assert again.adapters[1].version == found.adapters[1].version


async def test_selectors_and_cap(tmp_path: Path, options: SourceOptions) -> None:
    for name in ["b-lora", "a-lora", "c-other", "d-lora"]:
        write_adapter(tmp_path / name)
    found = await discover(spec("local", str(tmp_path), pattern="*-lora", maxAdapters=2),
                           namespace="ns", credentials=None, options=options)
    assert [x.name for x in found.adapters] == ["a-lora", "b-lora"]
    assert found.capped and found.total_found == 3

    async def names(**kw: object) -> tuple[list[str], list[tuple[str, str]]]:
        d = await discover(spec("local", str(tmp_path), **kw), namespace="ns", credentials=None,
                           options=options)
        return [x.name for x in d.adapters], [(e.name, e.reason) for e in d.errors]

    assert await names(prefix="c-") == (["c-other"], [])
    assert await names(adapters=["d-lora", "zz"]) == (["d-lora"], [("zz", "AdapterNotFound")])
    assert await names(pattern="?-lora", prefix="b", adapters=["b-lora", "a-lora"]) == (
        ["b-lora"], [("a-lora", "AdapterNotFound")])


async def test_local_errors(tmp_path: Path, options: SourceOptions) -> None:
    async def run(path: str) -> object:
        return await discover(spec("local", "/placeholder").model_copy(update={
            "adapter_source": spec("local", "/placeholder").adapter_source.model_copy(
                update={"repository": path})}), namespace="ns", credentials=None, options=options)

    with pytest.raises(SourceNotFound) as info:
        await run(str(tmp_path / "missing"))
    assert "mounted" in info.value.message
    with pytest.raises(InvalidSource):
        await run("relative/path")
    with pytest.raises(InvalidSource):
        await run(f"{tmp_path}/../etc")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoAdaptersMatch):
        await run(str(tmp_path / "empty"))
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        write_adapter(locked / "a")
        locked.chmod(0)
        try:
            with pytest.raises(AccessDenied):
                await run(str(locked))
        finally:
            locked.chmod(0o755)
