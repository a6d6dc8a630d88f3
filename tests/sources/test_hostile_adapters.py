"""Hostile adapter folders: one bad adapter is that adapter's failure, never the whole discovery."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lora_controller.sources.adapter_config import parse_adapter_config
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.discovery import _inspect, discover
from lora_controller.sources.errors import InvalidAdapterConfig, InvalidSource
from lora_controller.sources.local import check_local_path
from lora_controller.sources.model import (
    AdapterFile,
    Candidate,
    DiscoveredAdapter,
    SourceOptions,
)
from tests.sources.helpers import spec
from tests.sources.hostile_s3 import HostileS3
from tests.support.adapters import adapter_config, adapter_files, write_adapter

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")

DEEP = b"[" * 1100 + b"]" * 1100
HUGE_R = ('{"r": ' + "9" * 5000 + ', "lora_alpha": 16, "target_modules": ["q_proj"]}').encode()


@pytest.mark.parametrize(("data", "needle"), [
    (DEEP, "nested deeper than"),
    (b'{"a": ' + b"[" * 1100 + b"]" * 1100 + b"}", "nested deeper than"),
    (HUGE_R, "'r' must be a positive integer, found a 5000-digit number"),
    (json.dumps({**adapter_config(), "lora_alpha": 1e400}).encode(), "lora_alpha"),
    (b'{"r": 8, "lora_alpha": NaN, "target_modules": ["q"]}', "lora_alpha"),
    (json.dumps({**adapter_config(), "x": "\ud800"}).encode(), ""),
])
def test_hostile_configs_are_invalid_not_crashes(data: bytes, needle: str) -> None:
    try:
        cfg = parse_adapter_config(data)
    except InvalidAdapterConfig as exc:
        assert needle in exc.message
        assert len(exc.message) < 400
    else:  # only the lone-surrogate case may parse: it is valid JSON text
        assert not needle and cfg.r == 8


async def test_one_hostile_config_never_stops_the_others(
    tmp_path: Path, options: SourceOptions
) -> None:
    write_adapter(tmp_path / "good")
    write_adapter(tmp_path / "deep")
    (tmp_path / "deep" / "adapter_config.json").write_bytes(DEEP)
    write_adapter(tmp_path / "huge-r")
    (tmp_path / "huge-r" / "adapter_config.json").write_bytes(HUGE_R)
    found = await discover(spec("local", str(tmp_path)), namespace="ns", credentials=None,
                           options=options)
    assert [a.name for a in found.adapters] == ["good"]
    assert {(e.name, e.reason) for e in found.errors} == {
        ("deep", "InvalidAdapterConfig"), ("huge-r", "InvalidAdapterConfig")}
    by_name = {e.name: e.message for e in found.errors}
    assert "nested deeper than" in by_name["deep"]
    assert "5000-digit" in by_name["huge-r"]


class _BrokenReader:
    """A reader whose config read fails with something no one planned for."""

    endpoint = None

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def candidates(self) -> list[Candidate]:
        return []

    async def resolve(self, candidate: Candidate) -> Candidate:
        return candidate

    async def read_file(self, candidate: Candidate, path: str, **kwargs: object) -> bytes:
        raise self.exc

    async def fetch(self, adapter: DiscoveredAdapter, file: AdapterFile, dest: Path) -> None:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("exc", [RecursionError("maximum recursion depth exceeded"),
                                 ValueError("Exceeds the limit (4300 digits)"),
                                 KeyError("size"), MemoryError()])
async def test_any_error_inspecting_one_adapter_is_its_failure(exc: BaseException) -> None:
    cand = Candidate(segments=("a",), root_name="root", repository="/r", location="/r/a",
                     files=(AdapterFile("adapter_config.json", 10),
                            AdapterFile("adapter_model.safetensors", 10)))
    got = await _inspect(_BrokenReader(exc), "a", cand, spec=spec("local", "/r"), endpoint=None)
    assert not isinstance(got, DiscoveredAdapter)
    assert got.reason == "InvalidAdapterConfig" and got.name == "a"
    assert "/r/a" in got.message and type(exc).__name__ in got.message


# -- weights: only the file vLLM loads counts, and pickle is opt-in ---------------------------


def _folder(root: Path, name: str, weights: dict[str, bytes]) -> None:
    write_adapter(root / name)
    (root / name / "adapter_model.safetensors").unlink()
    for file, data in weights.items():
        (root / name / file).write_bytes(data)


async def test_only_the_weights_vllm_loads_count_and_pickle_is_opt_in(
    tmp_path: Path, options: SourceOptions
) -> None:
    st, pickle = b"s" * 1000, b"p" * 300
    _folder(tmp_path, "safe", {"adapter_model.safetensors": st, "training_args.bin": b"t" * 5000})
    _folder(tmp_path, "both", {"adapter_model.safetensors": st, "adapter_model.bin": pickle})
    _folder(tmp_path, "bin-only", {"adapter_model.bin": pickle})
    _folder(tmp_path, "pt-only", {"adapter_model.pt": pickle})
    _folder(tmp_path, "args-only", {"training_args.bin": b"t" * 5000, "optimizer.pt": b"o"})
    found = await discover(spec("local", str(tmp_path)), namespace="ns", credentials=None,
                           options=options)
    sizes = {a.name: a.weights_bytes for a in found.adapters}
    assert sizes == {"safe": 1000, "both": 1000}  # what vLLM loads: the safetensors file
    errors = {e.name: (e.reason, e.message) for e in found.errors}
    assert errors["bin-only"][0] == errors["pt-only"][0] == "PickleWeightsNotAllowed"
    assert "allowPickleWeights" in errors["bin-only"][1]
    assert "adapter_model.pt" in errors["pt-only"][1]
    assert errors["args-only"][0] == "AdapterWeightsMissing"
    allowed = await discover(spec("local", str(tmp_path), allowPickleWeights=True),
                             namespace="ns", credentials=None, options=options)
    assert {a.name: a.weights_bytes for a in allowed.adapters} == {
        "safe": 1000, "both": 1000, "bin-only": 300, "pt-only": 300}


# -- control characters never reach vLLM or a status raw ------------------------------------------


@pytest.mark.parametrize("path", ["/models/a\nb", "/models/\x1b[2Jx", "/m/\u202eevil"])
def test_a_local_path_with_control_characters_is_refused_and_escaped(path: str) -> None:
    with pytest.raises(InvalidSource) as info:
        check_local_path(path)
    assert not _UNPRINTABLE.search(info.value.message)
    assert "control character" in info.value.message


@pytest.mark.usefixtures("s3_env")
async def test_s3_key_names_with_control_characters_are_escaped(
    short_s3: HostileS3, options: SourceOptions
) -> None:
    short_s3.put_files("b", "p/ok", adapter_files())
    short_s3.put_files("b", "p/bad\nname", adapter_files())
    short_s3.put_files("b", "p/rtl\u202etxt.exe", adapter_files())
    keys = SourceCredentials(secret_name="aws", aws_access_key_id="AKIAFAKE",
                             aws_secret_access_key="fake-secret")
    found = await discover(spec("s3", "s3://b/p", endpoint=short_s3.url, region="us-east-1"),
                           namespace="ns", credentials=keys, options=options)
    assert [a.name for a in found.adapters] == ["ok"]
    assert {e.reason for e in found.errors} == {"InvalidAdapterName"}
    for e in found.errors:
        for text in (e.name, e.message, e.location):
            assert not _UNPRINTABLE.search(text), text
    assert {e.name for e in found.errors} == {"bad\\nname", "rtl\\u202etxt.exe"}
    assert any("s3://b/p/bad\\nname" in e.message for e in found.errors)


@pytest.fixture
async def short_s3() -> AsyncIterator[HostileS3]:
    server = HostileS3()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# -- links in a local source are reported, never followed ------------------------------------------


async def test_links_in_a_local_source_are_reported_not_followed(
    tmp_path: Path, options: SourceOptions
) -> None:
    root, outside = tmp_path / "vol", tmp_path / "outside"
    write_adapter(outside / "elsewhere")
    write_adapter(root / "plain")
    (root / "plain" / "notes.md").symlink_to(outside / "elsewhere" / "adapter_config.json")
    write_adapter(root / "linked-config")
    (root / "linked-config" / "adapter_config.json").unlink()
    (root / "linked-config" / "adapter_config.json").symlink_to(
        outside / "elsewhere" / "adapter_config.json")
    write_adapter(root / "linked-weights")
    (root / "linked-weights" / "adapter_model.safetensors").unlink()
    (root / "linked-weights" / "adapter_model.safetensors").symlink_to(
        outside / "elsewhere" / "adapter_model.safetensors")
    (root / "linked-dir").symlink_to(outside / "elsewhere", target_is_directory=True)
    found = await discover(spec("local", str(root)), namespace="ns", credentials=None,
                           options=options)
    assert [a.name for a in found.adapters] == ["plain"]
    errors = {e.name: (e.reason, e.message) for e in found.errors}
    assert errors["linked-config"][0] == "InvalidAdapterConfig"
    assert errors["linked-weights"][0] == "AdapterWeightsMissing"
    assert all("symbolic link" in m for _, m in errors.values())
    assert "linked-dir" not in errors  # a linked folder is never entered ...
    [note] = found.notes  # ... but every link is named in the discovery's note
    for name in ("plain/notes.md", "linked-dir", "linked-config/adapter_config.json",
                 "linked-weights/adapter_model.safetensors"):
        assert name in note
    assert "not followed" in note
    clean = await discover(spec("local", str(outside)), namespace="ns", credentials=None,
                           options=options)
    assert clean.notes == ()
