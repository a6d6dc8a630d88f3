"""Reading a pod's LoRA limits from its vLLM command line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lora_controller.vllm.serve_args import (
    VALID_MAX_LORA_RANKS,
    LoraModule,
    ServeArgsError,
    parse_serve_args,
)


def test_defaults_when_flags_absent() -> None:
    cfg = parse_serve_args(["vllm", "serve", "meta-llama/Llama-3.1-8B", "--enable-lora"])
    assert cfg.model == "meta-llama/Llama-3.1-8B"
    assert cfg.served_model_names == ("meta-llama/Llama-3.1-8B",)
    assert (cfg.enable_lora, cfg.max_loras, cfg.max_cpu_loras, cfg.max_lora_rank, cfg.port) == (True, 1, 1, 16, 8000)
    assert cfg.runtime_lora_updating is False and cfg.lora_modules == ()


def test_api_server_module_with_equals_and_underscores() -> None:
    cfg = parse_serve_args(
        ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model=/models/base", "--max_loras=4",
         "--max-cpu-loras", "12", "--max-lora-rank=64", "--port", "9000", "--served-model-name", "base", "alias",
         "--enable-lora", "--lora-modules", "sql=/a/sql", '{"name": "chat", "path": "/a/chat", "base_model_name": "base"}',
         "--dtype", "bfloat16"],
        runtime_updating_env="True",
    )
    assert cfg.model == "/models/base" and cfg.served_model_names == ("base", "alias")
    assert (cfg.max_loras, cfg.max_cpu_loras, cfg.max_lora_rank, cfg.port) == (4, 12, 64, 9000)
    assert cfg.lora_modules == (LoraModule("sql", "/a/sql"), LoraModule("chat", "/a/chat", "base"))
    assert cfg.runtime_lora_updating is True and cfg.serves("alias") and not cfg.serves("/models/base")


def test_later_flags_win_and_cpu_loras_follow_max_loras() -> None:
    cfg = parse_serve_args(["serve", "m", "--max-loras", "2", "--max-loras", "3"])
    assert (cfg.max_loras, cfg.max_cpu_loras) == (3, 3)


def test_positional_model_wins_over_flag() -> None:
    assert parse_serve_args(["vllm", "serve", "pos", "--model", "flag"]).model == "pos"


def test_shell_wrapped_command() -> None:
    cfg = parse_serve_args(["/bin/sh", "-c", "exec vllm serve /m --enable-lora --max-loras 8 --port 8080"])
    assert (cfg.model, cfg.max_loras, cfg.port, cfg.enable_lora) == ("/m", 8, 8080, True)


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " True "])
def test_runtime_env_true(value: str) -> None:
    assert parse_serve_args(["vllm", "serve", "m"], runtime_updating_env=value).runtime_lora_updating


@pytest.mark.parametrize("value", [None, "0", "false", "yes", ""])
def test_runtime_env_false(value: str | None) -> None:
    assert not parse_serve_args(["vllm", "serve", "m"], runtime_updating_env=value).runtime_lora_updating


@pytest.mark.parametrize(
    "argv",
    [
        ["vllm", "serve", "m", "--max-lora-rank", "12"],
        ["vllm", "serve", "m", "--max-loras", "4", "--max-cpu-loras", "2"],
        ["vllm", "serve", "m", "--max-loras", "x"],
        ["vllm", "serve", "m", "--lora-modules", "nopath"],
    ],
)
def test_values_vllm_refuses(argv: list[str]) -> None:
    with pytest.raises(ServeArgsError):
        parse_serve_args(argv)


def test_api_key_presence_only() -> None:
    cfg = parse_serve_args(["vllm", "serve", "m", "--api-key", "topsecret"])
    assert cfg.api_key_required and "topsecret" not in repr(cfg)


@given(
    max_loras=st.integers(1, 64),
    extra=st.integers(0, 64),
    rank=st.sampled_from(VALID_MAX_LORA_RANKS),
    equals=st.booleans(),
    underscore=st.booleans(),
)
def test_roundtrip(max_loras: int, extra: int, rank: int, equals: bool, underscore: bool) -> None:
    def flag(name: str, value: int) -> list[str]:
        name = name.replace("-", "_") if underscore else name
        return [f"--{name}={value}"] if equals else [f"--{name}", str(value)]

    argv = ["vllm", "serve", "m", *flag("max-loras", max_loras), *flag("max-cpu-loras", max_loras + extra),
            *flag("max-lora-rank", rank)]
    cfg = parse_serve_args(argv)
    assert (cfg.max_loras, cfg.max_cpu_loras, cfg.max_lora_rank) == (max_loras, max_loras + extra, rank)
