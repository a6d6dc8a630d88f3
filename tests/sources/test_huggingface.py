"""HuggingFace discovery with the real huggingface_hub client against the loopback hub."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from lora_controller.api.types import SourceType
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.discovery import discover
from lora_controller.sources.errors import (
    ADAPTER_NOT_FOUND,
    ADAPTER_WEIGHTS_MISSING,
    AccessDenied,
    NoAdaptersMatch,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
)
from lora_controller.sources.model import Discovery, SourceOptions
from tests.sources.helpers import spec
from tests.sources.hub_server import HubServer
from tests.support.adapters import adapter_config, adapter_files, under
from tests.support.secrets import credential

TOKEN = credential("hf_test_token_4f9a1c")


def hf(repo: str, **kw: Any) -> Any:
    return spec("huggingface", repo, **kw)


def creds(token: str = TOKEN) -> SourceCredentials:
    return SourceCredentials(secret_name="hf-secret", hf_token=token)


async def run(sp: Any, options: SourceOptions, token: str | None = None) -> Discovery:
    return await discover(sp, namespace="ns", credentials=creds(token) if token else None,
                          options=options)


async def test_repo_with_adapters_in_sub_folders(hub: HubServer, options: SourceOptions) -> None:
    a, b = adapter_files(r=8, seed=1), adapter_files(r=16, seed=2)
    sha = hub.add_repo("org/multi", {**under("sql", a), **under("team/chat", b),
                                     "README.md": b"# adapters", "notes/x.txt": b"x"})
    found = await run(hf("org/multi"), options)
    assert [x.name for x in found.adapters] == ["sql", "team-chat"]
    assert (found.errors, found.capped, found.total_found) == ((), False, 2)
    sql, chat = found.adapters
    assert sql.source_type is SourceType.HUGGINGFACE
    assert sql.location == "hf://org/multi/sql" and chat.subfolder == "team/chat"
    assert sql.revision == sha and sql.endpoint == hub.url
    assert {f.path: f.size for f in sql.files} == {k: len(v) for k, v in a.items()}
    weights = a["adapter_model.safetensors"]
    assert sql.weights_bytes == len(weights)
    w = next(f for f in sql.files if f.path == "adapter_model.safetensors")
    assert w.sha256 == hashlib.sha256(weights).hexdigest()
    assert (sql.rank, chat.rank, chat.config.lora_alpha) == (8, 16, 16.0)
    assert sql.config.target_modules == ("q_proj", "v_proj")
    assert sql.version != chat.version


async def test_root_adapter_is_named_after_the_repository(
    hub: HubServer, options: SourceOptions
) -> None:
    files = adapter_files()
    hub.add_repo("org/Sql-Lora.v2", {**files, "README.md": b"hi"})
    found = await run(hf("org/Sql-Lora.v2"), options)
    assert [a.name for a in found.adapters] == ["Sql-Lora.v2"]
    assert {f.path for f in found.adapters[0].files} == {*files, "README.md"}


async def test_org_lists_the_authors_adapter_repositories(
    hub: HubServer, options: SourceOptions
) -> None:
    for i in range(5):
        hub.add_repo(f"acme/lora-{i}", adapter_files(seed=i))
    hub.add_repo("acme/a-full-model", {"config.json": b"{}", "model.safetensors": b"\0" * 64})
    hub.add_repo("acme/secret-lora", adapter_files(seed=9), private=True, tokens={TOKEN})
    hub.add_repo("other/lora-x", adapter_files())
    found = await run(hf("acme"), options)
    assert [a.name for a in found.adapters] == [f"lora-{i}" for i in range(5)]
    assert found.adapters[0].repository == "acme/lora-0"
    with_token = await run(hf("acme"), options, token=TOKEN)
    assert "secret-lora" in [a.name for a in with_token.adapters]
    # the author's repositories were listed across pages (page size 3), with full=true
    pages = [p for m, p in hub.requests if p.startswith("/api/models?")]
    assert any("cursor=" in p for p in pages), pages
    assert all("full=true" in p for p in pages), pages


async def test_selectors_on_hub_adapters(hub: HubServer, options: SourceOptions) -> None:
    names = ["sql-small", "sql-big", "chat-small", "chat-big", "code"]
    hub.add_repo("org/zoo", {k: v for n in names for k, v in under(n, adapter_files()).items()})
    async def sel(**kw: Any) -> Discovery:
        return await run(hf("org/zoo", **kw), options)
    assert [a.name for a in (await sel(pattern="*-small")).adapters] == ["chat-small", "sql-small"]
    assert [a.name for a in (await sel(prefix="sql-")).adapters] == ["sql-big", "sql-small"]
    found = await sel(adapters=["code", "sql-big", "missing-one"])
    assert [a.name for a in found.adapters] == ["code", "sql-big"]
    assert [(e.name, e.reason) for e in found.errors] == [("missing-one", ADAPTER_NOT_FOUND)]
    combo = await sel(pattern="*big", prefix="chat", adapters=["chat-big", "sql-big"])
    assert [a.name for a in combo.adapters] == ["chat-big"]
    capped = await sel(maxAdapters=2)
    assert [a.name for a in capped.adapters] == ["chat-big", "chat-small"]
    assert capped.capped and capped.total_found == 5
    with pytest.raises(NoAdaptersMatch) as info:
        await sel(pattern="nothing*")
    assert "5 adapter(s)" in info.value.message and "'nothing*'" in info.value.message


async def test_revision_pins_branch_tag_or_commit_and_versions_follow_content(
    hub: HubServer, options: SourceOptions
) -> None:
    v1 = hub.add_repo("org/r", {**under("a", adapter_files(seed=1)),
                                **under("b", adapter_files(seed=2))}, tags=["v1"])
    first = await run(hf("org/r"), options)
    v2 = hub.commit("org/r", under("a", adapter_files(seed=3)))  # only adapter a changes
    second = await run(hf("org/r"), options)
    va1, vb1 = (x.version for x in first.adapters)
    va2, vb2 = (x.version for x in second.adapters)
    assert va1 != va2 and vb1 == vb2
    assert {x.revision for x in second.adapters} == {v2}
    pinned_tag = await run(hf("org/r", revision="v1"), options)
    pinned_sha = await run(hf("org/r", revision=v1), options)
    assert [x.version for x in pinned_tag.adapters] == [va1, vb1]
    assert [x.version for x in pinned_sha.adapters] == [va1, vb1]
    hub.commit("org/r", under("b", adapter_files(seed=4)), branch="dev")
    dev = await run(hf("org/r", revision="dev"), options)
    assert [x.version for x in dev.adapters][1] != vb1
    with pytest.raises(SourceNotFound) as info:
        await run(hf("org/r", revision="no-such-branch"), options)
    assert "no-such-branch" in info.value.message


async def test_per_adapter_problems_leave_the_others_alone(
    hub: HubServer, options: SourceOptions
) -> None:
    good = adapter_files()
    corrupt = {**good, "adapter_config.json": b'{"r": 8, "lora_alpha": '}
    no_r = {**good, "adapter_config.json": json.dumps(
        {k: v for k, v in adapter_config().items() if k != "r"}).encode()}
    other_base = adapter_files(base_model="mistralai/Mistral-7B-v0.1")
    hub.add_repo("org/mixed", {
        **under("good", good), **under("corrupt", corrupt), **under("no-r", no_r),
        **under("other-base", other_base),
        **under("no-weights", {"adapter_config.json": good["adapter_config.json"]}),
        **under("bad name", good),
    })
    found = await run(hf("org/mixed"), options)
    assert [a.name for a in found.adapters] == ["good"]
    reasons = {e.name: e.reason for e in found.errors}
    assert reasons == {
        "corrupt": "InvalidAdapterConfig", "no-r": "InvalidAdapterConfig",
        "other-base": "BaseModelMismatch", "no-weights": ADAPTER_WEIGHTS_MISSING,
        "bad name": "InvalidAdapterName",
    }
    messages = {e.name: e.message for e in found.errors}
    assert "not valid JSON" in messages["corrupt"] and "'r'" in messages["no-r"]
    assert "mistralai/Mistral-7B-v0.1" in messages["other-base"]
    assert found.total_found == 5  # 'bad name' cannot be named, so it is not counted


async def test_unknown_repository_or_author(hub: HubServer, options: SourceOptions) -> None:
    with pytest.raises(SourceNotFound) as info:
        await run(hf("org/nope"), options)
    assert "org/nope" in info.value.message and "credentialsSecretRef" in info.value.message
    with pytest.raises(SourceNotFound):
        await run(hf("nobody"), options)


async def test_private_repository_needs_the_token(hub: HubServer, options: SourceOptions) -> None:
    hub.add_repo("org/private", adapter_files(), private=True, tokens={TOKEN})
    with pytest.raises(SourceNotFound) as info:
        await run(hf("org/private"), options)
    assert "private" in info.value.message
    found = await run(hf("org/private"), options, token=TOKEN)
    assert [a.name for a in found.adapters] == ["private"]
    # the token was sent as a bearer token, and only to the hub
    hub.add_token("hf_other_valid_token")
    with pytest.raises(SourceNotFound) as info:
        await run(hf("org/private"), options, token="hf_other_valid_token")
    assert "'hf-secret'" in info.value.message


async def test_wrong_credentials_are_access_denied(hub: HubServer, options: SourceOptions) -> None:
    hub.add_repo("org/public", adapter_files())
    with pytest.raises(AccessDenied) as info:
        await run(hf("org/public"), options, token="hf_revoked_token")
    assert "'hf-secret'" in info.value.message and not info.value.retryable
    # a gated repository: the metadata is public, the files need an approved token (403)
    hub.add_repo("org/gated", under("a", adapter_files()), gated=True, tokens={TOKEN})
    hub.add_token("hf_not_approved")
    found = await run(hf("org/gated"), options, token="hf_not_approved")
    assert found.adapters == ()
    assert [(e.name, e.reason) for e in found.errors] == [("a", "AccessDenied")]
    assert "gated" in found.errors[0].message
    ok = await run(hf("org/gated"), options, token=TOKEN)
    assert [a.name for a in ok.adapters] == ["a"]


async def test_hub_down_is_retryable(hub: HubServer, options: SourceOptions) -> None:
    hub.add_repo("org/r", adapter_files())
    await hub.go_down()
    with pytest.raises(SourceUnreachable) as info:
        await run(hf("org/r"), options)
    assert info.value.retryable and hub.url in info.value.message
    await hub.come_up()
    assert [a.name for a in (await run(hf("org/r"), options)).adapters] == ["r"]


async def test_repeated_discovery_reads_configs_from_the_cache(
    hub: HubServer, options: SourceOptions
) -> None:
    hub.add_repo("org/r", {**under("a", adapter_files()), **under("b", adapter_files())})
    await run(hf("org/r"), options)
    before = len(hub.requests)
    again = await run(hf("org/r"), options)
    assert [a.name for a in again.adapters] == ["a", "b"]
    # one model_info call; the configs at the pinned commit come from the cache
    assert [p for _, p in hub.requests[before:]] == ["/api/models/org/r?blobs=true"]


async def test_hub_without_sizes_in_model_info_falls_back_to_the_tree(
    hub: HubServer, options: SourceOptions
) -> None:
    a = adapter_files(seed=4)
    hub.add_repo("org/r", {**under("x", a), **under("y", adapter_files(seed=5))})
    hub.sizes = "tree"  # ?blobs=true answers without sizes; the tree listing has them
    found = await run(hf("org/r"), options)
    assert [x.name for x in found.adapters] == ["x", "y"] and found.errors == ()
    x = found.adapters[0]
    assert x.weights_bytes == len(a["adapter_model.safetensors"])
    w = next(f for f in x.files if f.path == "adapter_model.safetensors")
    assert w.sha256 == hashlib.sha256(a["adapter_model.safetensors"]).hexdigest()
    assert any("/tree/" in p for _, p in hub.requests)
    hub.add_repo("org2/one", adapter_files())  # an org listing resolves through the same path
    assert [x.name for x in (await run(hf("org2"), options)).adapters] == ["one"]


async def test_hub_without_any_sizes_says_what_it_lacks(
    hub: HubServer, options: SourceOptions
) -> None:
    hub.add_repo("org/r", adapter_files())
    hub.sizes = "none"
    with pytest.raises(SourceError) as info:
        await run(hf("org/r"), options)
    assert info.value.reason == "SourceUnsupported" and not info.value.retryable
    assert "file sizes" in info.value.message and hub.url in info.value.message
