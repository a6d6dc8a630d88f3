"""Pure parts of discovery: naming, selection, capping, config parsing, base-model check,
credentials from a Secret."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lora_controller.api.types import AdapterSource, CredentialsSecretRef, SourceType
from lora_controller.sources.adapter_config import base_model_matches, parse_adapter_config
from lora_controller.sources.credentials import credentials_from_secret
from lora_controller.sources.errors import (
    ADAPTER_NOT_FOUND,
    DUPLICATE_ADAPTER_NAME,
    INVALID_ADAPTER_NAME,
    CredentialsMissing,
    InvalidAdapterConfig,
)
from lora_controller.sources.model import Candidate
from lora_controller.sources.selection import adapter_name, select
from tests.support.adapters import adapter_config


def cand(path: str, root: str = "repo") -> Candidate:
    segs = tuple(path.split("/")) if path else ()
    return Candidate(segments=segs, root_name=root, repository="r", location=f"x://r/{path}")


def src(**kw: Any) -> AdapterSource:
    return AdapterSource(type=SourceType.S3, repository="s3://bucket/p", **kw)


def names(sel: Any) -> list[str]:
    return [n for n, _ in sel.chosen]


def test_names_root_and_nested() -> None:
    assert adapter_name(cand("")) == "repo"
    assert adapter_name(cand("a")) == "a"
    assert adapter_name(cand("team/sql/v2")) == "team-sql-v2"


def test_no_selector_selects_everything_sorted() -> None:
    sel = select([cand("b"), cand("a"), cand("c/d")], src())
    assert names(sel) == ["a", "b", "c-d"]
    assert (sel.capped, sel.total_found, sel.errors) == (False, 3, ())


def test_selectors_are_a_conjunction() -> None:
    cands = [cand(n) for n in ("lora-sql", "lora-chat", "base-sql", "lora-sql-big")]
    assert names(select(cands, src(pattern="*sql*"))) == ["base-sql", "lora-sql", "lora-sql-big"]
    assert names(select(cands, src(prefix="lora-"))) == ["lora-chat", "lora-sql", "lora-sql-big"]
    assert names(select(cands, src(pattern="*sql*", prefix="lora-"))) == [
        "lora-sql", "lora-sql-big"]
    sel = select(cands, src(pattern="*sql*", prefix="lora-", adapters=["lora-sql", "lora-chat"]))
    assert names(sel) == ["lora-sql"]
    # lora-chat exists but the pattern excludes it: reported, not silently dropped
    assert [(e.name, e.reason) for e in sel.errors] == [("lora-chat", ADAPTER_NOT_FOUND)]
    assert "excluded" in sel.errors[0].message


def test_glob_is_case_sensitive_and_anchored() -> None:
    cands = [cand("SQL-lora"), cand("sql-lora"), cand("xsql")]
    assert names(select(cands, src(pattern="sql*"))) == ["sql-lora"]
    assert names(select(cands, src(pattern="?sql"))) == ["xsql"]


def test_explicit_list_reports_missing_names() -> None:
    sel = select([cand("a"), cand("b")], src(adapters=["b", "zz", "a"]))
    assert names(sel) == ["a", "b"]
    assert [(e.name, e.reason) for e in sel.errors] == [("zz", ADAPTER_NOT_FOUND)]
    assert "not found in the source" in sel.errors[0].message


def test_cap_keeps_first_by_name_and_says_so() -> None:
    cands = [cand(f"a{i:02d}") for i in reversed(range(12))]
    sel = select(cands, src(max_adapters=5))
    assert names(sel) == ["a00", "a01", "a02", "a03", "a04"]
    assert sel.capped and sel.total_found == 12
    exact = select(cands[:5], src(max_adapters=5))
    assert not exact.capped and exact.total_found == 5


def test_invalid_and_escaping_names_are_reported_not_used() -> None:
    cands = [cand("ok"), cand("bad name"), cand("x/../../etc"), cand("-dash"), cand("a" * 129),
             cand("fine.v1_2")]
    sel = select(cands, src())
    assert names(sel) == ["fine.v1_2", "ok"]
    errors = {e.name: e for e in sel.errors}
    assert {e.reason for e in errors.values()} == {INVALID_ADAPTER_NAME}
    assert set(errors) == {"bad name", "x-..-..-etc", "-dash", "a" * 129}
    assert "escape" in errors["x-..-..-etc"].message


def test_duplicate_names_are_reported_for_the_name() -> None:
    sel = select([cand("a-b"), cand("a/b"), cand("c")], src())
    assert names(sel) == ["c"]
    assert [(e.name, e.reason) for e in sel.errors] == [("a-b", DUPLICATE_ADAPTER_NAME)]
    assert "x://r/a-b" in sel.errors[0].message and "x://r/a/b" in sel.errors[0].message


@given(
    st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), max_size=30, unique=True),
    st.integers(min_value=1, max_value=40),
    st.sampled_from([None, "a*", "*1*", "?b*"]),
    st.sampled_from([None, "a", "b-"]),
)
def test_selection_properties(
    found: list[str], cap: int, pattern: str | None, prefix: str | None
) -> None:
    import fnmatch

    sel = select([cand(n) for n in found], src(max_adapters=cap, pattern=pattern, prefix=prefix))
    expected = sorted(n for n in found
                      if (pattern is None or fnmatch.fnmatchcase(n, pattern))
                      and (prefix is None or n.startswith(prefix)))
    assert names(sel) == expected[:cap]
    assert sel.total_found == len(expected)
    assert sel.capped == (len(expected) > cap)


# -- adapter_config.json ----------------------------------------------------------------------


def raw(**kw: Any) -> bytes:
    return json.dumps(adapter_config(**kw)).encode()


def test_config_fields_and_rank_pattern() -> None:
    cfg = parse_adapter_config(raw(r=16, lora_alpha=32, base_model="org/base"))
    assert (cfg.r, cfg.lora_alpha, cfg.target_modules, cfg.base_model_name_or_path, cfg.rank) == (
        16, 32.0, ("q_proj", "v_proj"), "org/base", 16)
    cfg = parse_adapter_config(raw(r=8, rank_pattern={"q_proj": 64, "v_proj": 4}))
    assert (cfg.r, cfg.rank) == (8, 64)
    cfg = parse_adapter_config(raw(target_modules=".*attn.*", base_model=None))
    assert cfg.target_modules == ".*attn.*" and cfg.base_model_name_or_path is None


@pytest.mark.parametrize(("data", "needle"), [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (raw(r=0), "'r'"),
    (raw(r="8"), "'r'"),
    (raw(r=True), "'r'"),
    (raw(lora_alpha=-1), "lora_alpha"),
    (raw(target_modules=[]), "target_modules"),
    (raw(target_modules=[1, 2]), "target_modules"),
    (raw(base_model=7), "base_model_name_or_path"),
    (raw(peft_type="IA3"), "LoRA adapters only"),
    (raw(rank_pattern={"q": 0}), "'q'"),
    (json.dumps({k: v for k, v in adapter_config().items() if k != "r"}).encode(), "'r'"),
])
def test_invalid_configs_say_what_is_wrong(data: bytes, needle: str) -> None:
    with pytest.raises(InvalidAdapterConfig) as info:
        parse_adapter_config(data)
    assert needle in info.value.message
    assert info.value.reason == "InvalidAdapterConfig" and not info.value.retryable


@pytest.mark.parametrize(("config_base", "spec_base", "ok"), [
    (None, "meta-llama/Llama-2-7b-hf", True),
    ("", "meta-llama/Llama-2-7b-hf", True),
    ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf", True),
    ("meta-llama/llama-2-7b-hf/", "Meta-Llama/Llama-2-7b-hf", True),
    ("/models/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf", True),
    ("meta-llama/Llama-2-7b-hf", "Llama-2-7b-hf", True),
    ("meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-7b-hf", False),
    ("mistralai/Mistral-7B-v0.1", "meta-llama/Llama-2-7b-hf", False),
    ("meta-llama/Llama-2-7b-hf", "Llama-2-7b", False),
])
def test_base_model_comparison(config_base: str | None, spec_base: str, ok: bool) -> None:
    assert base_model_matches(config_base, spec_base) is ok


# -- credentials ------------------------------------------------------------------------------


def test_credentials_pick_needed_keys_with_renames() -> None:
    ref = CredentialsSecretRef(name="hf", keys={"HF_TOKEN": "token"})
    creds = credentials_from_secret({"token": "hf_abc\n", "other": "x"}, ref=ref,
                                    source_type=SourceType.HUGGINGFACE, namespace="ns")
    assert creds.hf_token == "hf_abc" and creds.aws_access_key_id is None
    assert "hf_abc" not in repr(creds) and "hf_abc" not in str(creds)
    assert "HF_TOKEN" in repr(creds)
    s3 = credentials_from_secret(
        {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr3t"},
        ref=CredentialsSecretRef(name="aws"), source_type=SourceType.S3, namespace="ns")
    assert (s3.aws_access_key_id, s3.aws_secret_access_key, s3.aws_session_token) == (
        "AKIA1", "s3cr3t", None)
    assert "s3cr3t" not in repr(s3) and "AKIA1" not in repr(s3)
    assert set(s3.secrets()) == {"AKIA1", "s3cr3t"}


def test_credentials_missing_secret_key_or_empty_value() -> None:
    ref = CredentialsSecretRef(name="aws", keys={"AWS_SECRET_ACCESS_KEY": "secret"})
    with pytest.raises(CredentialsMissing) as info:
        credentials_from_secret(None, ref=ref, source_type=SourceType.S3, namespace="team")
    assert "'aws'" in info.value.message and "not found" in info.value.message
    assert "'team'" in info.value.message
    with pytest.raises(CredentialsMissing) as info:
        credentials_from_secret({"AWS_ACCESS_KEY_ID": "AKIA-VALUE"}, ref=ref,
                                source_type=SourceType.S3, namespace="team")
    assert "secret (used as AWS_SECRET_ACCESS_KEY) is missing" in info.value.message
    assert "AKIA-VALUE" not in info.value.message
    with pytest.raises(CredentialsMissing) as info:
        credentials_from_secret({"HF_TOKEN": "  \n"}, ref=CredentialsSecretRef(name="hf"),
                                source_type=SourceType.HUGGINGFACE, namespace="team")
    assert "HF_TOKEN is empty" in info.value.message
