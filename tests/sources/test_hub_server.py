"""The fake hub answers the real huggingface_hub client as the Hub does (so other tests can
trust it): trees at a revision with %2F-encoded paths and pagination, downloads with ETag /
X-Repo-Commit and resumed ranges, and the error codes the client maps to its exceptions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.sources.hub_server import HubServer
from tests.support.adapters import adapter_files, under


async def test_tree_files_and_downloads(hub: HubServer, tmp_path: Path) -> None:
    files = {**under("sub one/deeper", adapter_files()), **under("b", adapter_files(seed=2)),
             "README.md": b"hello"}
    sha = hub.add_repo("org/r", files, tags=["v1"])
    api = HfApi(endpoint=hub.url, token=False)

    def calls() -> None:
        assert sorted(api.list_repo_files("org/r", revision="v1")) == sorted(files)
        tree = list(api.list_repo_tree("org/r", path_in_repo="sub one", revision=sha))
        assert [e.path for e in tree] == ["sub one/deeper"]
        deep = {e.path: e for e in api.list_repo_tree("org/r", recursive=True)}
        weights = deep["b/adapter_model.safetensors"]
        assert weights.size == len(files["b/adapter_model.safetensors"])  # type: ignore[union-attr]
        assert weights.lfs is not None  # type: ignore[union-attr]
        path = hf_hub_download("org/r", "sub one/deeper/adapter_config.json", revision="v1",
                               cache_dir=tmp_path, endpoint=hub.url, token=False)
        assert Path(path).read_bytes() == files["sub one/deeper/adapter_config.json"]
        assert f"snapshots/{sha}/" in path

    await asyncio.to_thread(calls)
    assert any("%2F" in p or "sub%20one" in p for _, p in hub.requests)


async def test_resume_after_a_cut_connection(hub: HubServer, tmp_path: Path) -> None:
    files = adapter_files(hidden=256)
    hub.add_repo("org/r", files)
    hub.drop_after, hub.drops = 4096, 1
    path = await asyncio.to_thread(
        hf_hub_download, "org/r", "adapter_model.safetensors", local_dir=tmp_path,
        endpoint=hub.url, token=False)
    assert await asyncio.to_thread(Path(path).read_bytes) == files["adapter_model.safetensors"]
    gets = [p for m, p in hub.requests if m == "GET"]
    assert len(gets) == 2  # cut once, resumed once


@pytest.mark.parametrize(("setup", "token", "error"), [
    ("private", None, RepositoryNotFoundError),
    ("missing", None, RepositoryNotFoundError),
    ("gated", "hf_valid", GatedRepoError),
    ("revision", None, RevisionNotFoundError),
    ("entry", None, EntryNotFoundError),
])
async def test_errors_map_to_client_exceptions(
    hub: HubServer, tmp_path: Path, setup: str, token: str | None, error: type[Exception]
) -> None:
    hub.add_token("hf_valid")
    hub.add_repo("org/private", adapter_files(), private=True, tokens={"hf_owner"})
    hub.add_repo("org/gated", adapter_files(), gated=True, tokens={"hf_owner"})
    hub.add_repo("org/ok", adapter_files())
    repo, filename, revision = {
        "private": ("org/private", "adapter_config.json", None),
        "missing": ("org/none", "adapter_config.json", None),
        "gated": ("org/gated", "adapter_config.json", None),
        "revision": ("org/ok", "adapter_config.json", "nope"),
        "entry": ("org/ok", "nope.json", None),
    }[setup]
    with pytest.raises(error):
        await asyncio.to_thread(hf_hub_download, repo, filename, revision=revision,
                                cache_dir=tmp_path, endpoint=hub.url, token=token or False)
