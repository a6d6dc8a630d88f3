"""S3 discovery with the real s3fs against moto's server on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from lora_controller.api.types import SourceType
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.discovery import discover
from lora_controller.sources.errors import (
    ADAPTER_NOT_FOUND,
    AccessDenied,
    NoAdaptersMatch,
    SourceNotFound,
    SourceUnreachable,
)
from lora_controller.sources.model import Discovery, SourceOptions
from tests.sources.helpers import spec
from tests.sources.s3_server import REGION, MotoS3, free_port
from tests.support.adapters import adapter_files

pytestmark = pytest.mark.usefixtures("s3_env")


def s3spec(s3: MotoS3, uri: str, **kw: Any) -> Any:
    return spec("s3", uri, endpoint=s3.endpoint, region=REGION, **kw)


def keys(s3: MotoS3, *, secret: str | None = None) -> SourceCredentials:
    return SourceCredentials(secret_name="aws-keys", aws_access_key_id=s3.access_key,
                             aws_secret_access_key=secret or s3.secret_key)


async def run(sp: Any, options: SourceOptions, creds: SourceCredentials | None) -> Discovery:
    return await discover(sp, namespace="ns", credentials=creds, options=options)


async def test_each_folder_with_a_config_is_an_adapter(
    moto_s3: MotoS3, options: SourceOptions
) -> None:
    b = moto_s3.bucket()
    a, c = adapter_files(r=4, seed=1), adapter_files(r=32, seed=2)
    moto_s3.put_adapter(b, "loras/sql", a)
    moto_s3.put_adapter(b, "loras/team/chat", c)
    moto_s3.put(b, {"loras/README.md": b"x", "loras/empty/notes.txt": b"n",
                    "loras-other/x/adapter_config.json": a["adapter_config.json"]})
    found = await run(s3spec(moto_s3, f"s3://{b}/loras"), options, keys(moto_s3))
    assert [x.name for x in found.adapters] == ["sql", "team-chat"]
    sql, chat = found.adapters
    assert sql.source_type is SourceType.S3
    assert sql.location == f"s3://{b}/loras/sql" and chat.subfolder == "team/chat"
    assert {f.path: f.size for f in sql.files} == {k: len(v) for k, v in a.items()}
    assert all(f.etag for f in sql.files)
    assert (sql.rank, chat.rank) == (4, 32)
    assert sql.weights_bytes == len(a["adapter_model.safetensors"])
    assert (sql.endpoint, sql.region) == (moto_s3.endpoint, REGION)
    # a trailing slash names the same folder
    again = await run(s3spec(moto_s3, f"s3://{b}/loras/"), options, keys(moto_s3))
    assert [x.version for x in again.adapters] == [sql.version, chat.version]


async def test_adapter_at_the_prefix_or_bucket_root(moto_s3: MotoS3, options: SourceOptions) -> None:
    b = moto_s3.bucket()
    moto_s3.put_adapter(b, "one/my-adapter", adapter_files())
    found = await run(s3spec(moto_s3, f"s3://{b}/one/my-adapter"), options, keys(moto_s3))
    assert [x.name for x in found.adapters] == ["my-adapter"]
    b2 = moto_s3.bucket("root")
    moto_s3.put_adapter(b2, "", adapter_files())
    found = await run(s3spec(moto_s3, f"s3://{b2}"), options, keys(moto_s3))
    assert [x.name for x in found.adapters] == [b2]


async def test_selectors_cap_and_versions(moto_s3: MotoS3, options: SourceOptions) -> None:
    b = moto_s3.bucket()
    for i, name in enumerate(["lora-a", "lora-b", "lora-c", "x-lora", "y"]):
        moto_s3.put_adapter(b, f"p/{name}", adapter_files(seed=i))
    creds = keys(moto_s3)
    sel = await run(s3spec(moto_s3, f"s3://{b}/p", prefix="lora-", pattern="*[ab]",
                           adapters=["lora-a", "lora-zzz"]), options, creds)
    assert [x.name for x in sel.adapters] == ["lora-a"]
    assert [(e.name, e.reason) for e in sel.errors] == [("lora-zzz", ADAPTER_NOT_FOUND)]
    capped = await run(s3spec(moto_s3, f"s3://{b}/p", maxAdapters=3), options, creds)
    assert [x.name for x in capped.adapters] == ["lora-a", "lora-b", "lora-c"]
    assert capped.capped and capped.total_found == 5
    before = {x.name: x.version for x in capped.adapters}
    moto_s3.put_adapter(b, "p/lora-b", adapter_files(seed=99))
    after = {x.name: x.version
             for x in (await run(s3spec(moto_s3, f"s3://{b}/p", maxAdapters=3), options,
                                 creds)).adapters}
    assert after["lora-b"] != before["lora-b"]
    assert (after["lora-a"], after["lora-c"]) == (before["lora-a"], before["lora-c"])
    with pytest.raises(NoAdaptersMatch):
        await run(s3spec(moto_s3, f"s3://{b}/p", pattern="zzz*"), options, creds)


async def test_missing_bucket_prefix_or_adapters(moto_s3: MotoS3, options: SourceOptions) -> None:
    creds = keys(moto_s3)
    with pytest.raises(SourceNotFound) as info:
        await run(s3spec(moto_s3, "s3://no-such-bucket-4242/p"), options, creds)
    assert "no-such-bucket-4242" in info.value.message
    b = moto_s3.bucket()
    moto_s3.put(b, {"other/file.txt": b"x", "p/readme.txt": b"x"})
    with pytest.raises(SourceNotFound) as info:
        await run(s3spec(moto_s3, f"s3://{b}/absent"), options, creds)
    assert "holds no objects" in info.value.message
    with pytest.raises(NoAdaptersMatch) as info:
        await run(s3spec(moto_s3, f"s3://{b}/p"), options, creds)
    assert "adapter_config.json" in info.value.message


async def test_wrong_keys_are_access_denied(moto_s3: MotoS3, options: SourceOptions) -> None:
    b = moto_s3.bucket()
    moto_s3.put_adapter(b, "p/a", adapter_files())
    unknown = SourceCredentials(secret_name="aws-keys", aws_access_key_id="AKIAUNKNOWN000000",
                                aws_secret_access_key="wrong-secret-value")
    with moto_s3.auth():
        with pytest.raises(AccessDenied) as info:
            await run(s3spec(moto_s3, f"s3://{b}/p"), options, unknown)
        assert "'aws-keys'" in info.value.message and not info.value.retryable
        with pytest.raises(AccessDenied):
            await run(s3spec(moto_s3, f"s3://{b}/p"), options,
                      keys(moto_s3, secret="not-the-secret"))
        ok = await run(s3spec(moto_s3, f"s3://{b}/p"), options, keys(moto_s3))
        assert [x.name for x in ok.adapters] == ["a"]


async def test_default_credential_chain(
    moto_s3: MotoS3, options: SourceOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = moto_s3.bucket()
    moto_s3.put_adapter(b, "p/a", adapter_files())
    with moto_s3.auth():
        with pytest.raises(AccessDenied) as info:  # no Secret, nothing in the chain
            await run(s3spec(moto_s3, f"s3://{b}/p"), options, None)
        assert "credential" in info.value.message
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_key)
        found = await run(s3spec(moto_s3, f"s3://{b}/p"), options, None)
        assert [x.name for x in found.adapters] == ["a"]


async def test_unreachable_endpoint_is_retryable(options: SourceOptions) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    creds = SourceCredentials(secret_name="s", aws_access_key_id="AKIA", aws_secret_access_key="x")
    with pytest.raises(SourceUnreachable) as info:
        await discover(spec("s3", "s3://bucket/p", endpoint=dead), namespace="ns",
                       credentials=creds, options=options)
    assert info.value.retryable


async def test_per_adapter_problems(moto_s3: MotoS3, options: SourceOptions) -> None:
    b = moto_s3.bucket()
    good = adapter_files()
    moto_s3.put_adapter(b, "p/good", good)
    moto_s3.put_adapter(b, "p/corrupt", {**good, "adapter_config.json": b"\x00garbage"})
    moto_s3.put_adapter(b, "p/llama-13b", adapter_files(base_model="meta-llama/Llama-2-13b-hf"))
    moto_s3.put_adapter(b, "p/bad name", good)
    found = await run(s3spec(moto_s3, f"s3://{b}/p"), options, keys(moto_s3))
    assert [x.name for x in found.adapters] == ["good"]
    assert {e.name: e.reason for e in found.errors} == {
        "corrupt": "InvalidAdapterConfig", "llama-13b": "BaseModelMismatch",
        "bad name": "InvalidAdapterName"}
