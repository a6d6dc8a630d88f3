"""A pod's LoRA limits as its vLLM command line says them, with vLLM's defaults where it says nothing.

The scheduler needs each pod's `--max-loras`, `--max-cpu-loras`, `--max-lora-rank`, its served model
names and port; the only place they are written is the vLLM container's command and args. This
module reads them the way vLLM's own parser does (`--flag value` and `--flag=value`, `_` or `-` in
names, the later flag wins, `vllm serve MODEL` or `python -m vllm.entrypoints.openai.api_server
--model M`), without importing vLLM. Pure: no I/O.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_MAX_LORAS = 1
DEFAULT_MAX_LORA_RANK = 16
DEFAULT_PORT = 8000
# vLLM's MaxLoRARanks literal.
VALID_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
RUNTIME_UPDATING_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"

_API_SERVER_MODULES = ("vllm.entrypoints.openai.api_server", "vllm.entrypoints.api_server")
# Flags that take values (nargs="+" ones collect until the next flag).
_MULTI_VALUE = {"lora-modules", "served-model-name", "middleware", "allowed-origins"}
_BOOL_FLAGS = {"enable-lora", "disable-log-requests", "trust-remote-code", "enforce-eager"}


class ServeArgsError(ValueError):
    """The command line has a value vLLM would refuse (the pod would not have started)."""


@dataclass(frozen=True, slots=True)
class LoraModule:
    """A `--lora-modules` entry: an adapter loaded at start-up."""

    name: str
    path: str
    base_model_name: str | None = None


@dataclass(frozen=True, slots=True)
class VllmServeConfig:
    """What the vLLM command line says about serving and LoRA; absent values take vLLM's defaults."""

    model: str | None
    served_model_names: tuple[str, ...]
    enable_lora: bool = False
    max_loras: int = DEFAULT_MAX_LORAS
    max_cpu_loras: int = DEFAULT_MAX_LORAS
    max_lora_rank: int = DEFAULT_MAX_LORA_RANK
    lora_modules: tuple[LoraModule, ...] = ()
    port: int = DEFAULT_PORT
    host: str | None = None
    max_model_len: int | None = None
    runtime_lora_updating: bool = False
    api_key_required: bool = False
    is_vllm: bool = True
    unknown_args: tuple[str, ...] = field(default=(), repr=False)

    @property
    def served_model_name(self) -> str | None:
        """The name vLLM shows first (the first `--served-model-name`, else the model)."""
        return self.served_model_names[0] if self.served_model_names else None

    def serves(self, model_name: str) -> bool:
        """Whether requests naming `model_name` reach this pod's base model."""
        return model_name in self.served_model_names


def runtime_updating_from_env(value: str | None) -> bool:
    """vLLM's reading of VLLM_ALLOW_RUNTIME_LORA_UPDATING: `1` or `true`, any case."""
    return value is not None and value.strip().lower() in ("1", "true")


def parse_lora_module(value: str) -> LoraModule:
    """One `--lora-modules` value: `name=path` or a JSON object with name, path, base_model_name."""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ServeArgsError(f"--lora-modules: invalid JSON {value!r}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(
            data.get("path"), str
        ):
            raise ServeArgsError(f"--lora-modules: JSON entry needs string 'name' and 'path': {value!r}")
        base = data.get("base_model_name")
        return LoraModule(name=data["name"], path=data["path"], base_model_name=base if isinstance(base, str) else None)
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ServeArgsError(f"--lora-modules: expected name=path, got {value!r}")
    return LoraModule(name=name, path=path)


def _int(flag: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ServeArgsError(f"--{flag}: invalid int value {value!r}") from None


def _bool_value(flag: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ServeArgsError(f"--{flag}: invalid boolean value {value!r}")


def _find_vllm_argv(argv: Sequence[str]) -> tuple[list[str], str | None, bool]:
    """Strip the launcher: return (flags and positionals after it, positional model, is_vllm)."""
    items = list(argv)
    # A shell wrapper: sh -c "... vllm serve m --flags".
    for i, item in enumerate(items[:-1]):
        if item in ("-c", "-lc") and i <= 2:
            return _find_vllm_argv(shlex.split(items[i + 1]))
    for i, item in enumerate(items):
        base = item.rsplit("/", 1)[-1]
        if base == "vllm" and i + 1 < len(items) and items[i + 1] == "serve":
            rest = items[i + 2 :]
            if rest and not rest[0].startswith("-"):
                return rest[1:], rest[0], True
            return rest, None, True
        if item == "-m" and i + 1 < len(items) and items[i + 1] in _API_SERVER_MODULES:
            return items[i + 2 :], None, True
        if item in _API_SERVER_MODULES:
            return items[i + 1 :], None, True
    # Bare args (the container's args without its command): flags, maybe `serve MODEL` first.
    if items and items[0] == "serve":
        rest = items[1:]
        if rest and not rest[0].startswith("-"):
            return rest[1:], rest[0], True
        return rest, None, True
    looks_like_flags = any(item.startswith("--") for item in items)
    return items, None, looks_like_flags


@dataclass
class _Flags:
    """A command line's flags as argparse would leave them (later flags win)."""

    values: dict[str, str] = field(default_factory=dict)
    multi: dict[str, list[str]] = field(default_factory=dict)
    bools: dict[str, bool] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def _scan(rest: Sequence[str]) -> _Flags:
    flags = _Flags()
    i = 0
    while i < len(rest):
        item = rest[i]
        i += 1
        if not item.startswith("--"):
            flags.unknown.append(item)
            continue
        key, eq, inline = item[2:].partition("=")
        key = key.replace("_", "-")
        if key.startswith("no-") and key[3:] in _BOOL_FLAGS and not eq:
            flags.bools[key[3:]] = False
        elif key in _BOOL_FLAGS:
            flags.bools[key] = _bool_value(key, inline) if eq else True
        elif key in _MULTI_VALUE:
            collected = [inline] if eq else []
            while not eq and i < len(rest) and not rest[i].startswith("--"):
                collected.append(rest[i])
                i += 1
            flags.multi[key] = collected  # a repeated flag replaces the list (nargs="+")
        elif eq:
            flags.values[key] = inline
        elif i < len(rest) and not rest[i].startswith("--"):
            flags.values[key] = rest[i]
            i += 1
        else:
            flags.values[key] = ""
    return flags


def _lora_limits(values: Mapping[str, str]) -> tuple[int, int, int]:
    """(--max-loras, --max-cpu-loras, --max-lora-rank), checked as vLLM checks them."""
    max_loras = _int("max-loras", values["max-loras"]) if "max-loras" in values else DEFAULT_MAX_LORAS
    if max_loras < 1:
        raise ServeArgsError(f"--max-loras must be >= 1, got {max_loras}")
    max_cpu_loras = _int("max-cpu-loras", values["max-cpu-loras"]) if values.get("max-cpu-loras") else max_loras
    if max_cpu_loras < max_loras:
        raise ServeArgsError(f"max_cpu_loras ({max_cpu_loras}) must be >= max_loras ({max_loras})")
    rank = _int("max-lora-rank", values["max-lora-rank"]) if "max-lora-rank" in values else DEFAULT_MAX_LORA_RANK
    if rank not in VALID_MAX_LORA_RANKS:
        raise ServeArgsError(f"--max-lora-rank: invalid choice {rank} (choose from {list(VALID_MAX_LORA_RANKS)})")
    return max_loras, max_cpu_loras, rank


def parse_serve_args(
    argv: Sequence[str],
    *,
    runtime_updating_env: str | None = None,
    api_key_env: str | None = None,
) -> VllmServeConfig:
    """Read a vLLM command line (command + args of the container) into a `VllmServeConfig`.

    `runtime_updating_env` is the container's VLLM_ALLOW_RUNTIME_LORA_UPDATING value (None when
    unset); `api_key_env` its VLLM_API_KEY. Later flags win, as with argparse. Raises
    `ServeArgsError` for values vLLM itself would reject.
    """
    rest, positional_model, is_vllm = _find_vllm_argv(argv)
    flags = _scan(rest)
    values = flags.values
    model = positional_model or values.get("model") or None
    served = tuple(n for n in flags.multi.get("served-model-name", []) if n)
    if not served and model:
        served = (model,)
    max_loras, max_cpu_loras, rank = _lora_limits(values)
    mml = values.get("max-model-len")
    return VllmServeConfig(
        model=model,
        served_model_names=served,
        enable_lora=flags.bools.get("enable-lora", False),
        max_loras=max_loras,
        max_cpu_loras=max_cpu_loras,
        max_lora_rank=rank,
        lora_modules=tuple(parse_lora_module(v) for v in flags.multi.get("lora-modules", [])),
        port=_int("port", values["port"]) if values.get("port") else DEFAULT_PORT,
        host=values.get("host") or None,
        max_model_len=_int("max-model-len", mml) if mml and mml.isdigit() else None,
        runtime_lora_updating=runtime_updating_from_env(runtime_updating_env),
        api_key_required=bool(values.get("api-key") or api_key_env),
        is_vllm=is_vllm,
        unknown_args=tuple(flags.unknown),
    )
