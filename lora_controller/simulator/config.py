"""A simulated vLLM pod's configuration (vLLM's own flags) and its fault knobs, and the CLI that sets them.

The flags keep vLLM's names and defaults (`--max-loras` 1, `--max-cpu-loras` = max-loras,
`--max-lora-rank` 16 among vLLM's allowed ranks) so a test can start the simulator with the same
command line as a real server; flags of vLLM the simulator has no use for are accepted and ignored.
Two defaults differ on purpose, because the simulator exists to test runtime LoRA loading: LoRA is
enabled and runtime updating is on unless `--no-enable-lora` / `--no-runtime-lora-updating` (or
VLLM_ALLOW_RUNTIME_LORA_UPDATING set to something else than 1/true) say otherwise.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lora_controller.vllm.serve_args import (
    RUNTIME_UPDATING_ENV,
    VALID_MAX_LORA_RANKS,
    LoraModule,
    ServeArgsError,
    parse_lora_module,
    runtime_updating_from_env,
)

VLLM_VERSION = "0.32.0"


@dataclass
class FaultKnobs:
    """Misbehaviour to inject; every field can be changed at run time (control endpoint or attribute)."""

    error_rate_500: float = 0.0  # fraction of vLLM-route requests answered 500
    hang_rate: float = 0.0  # fraction of vLLM-route requests delayed by hang_seconds before answering
    hang_seconds: float = 0.0
    refuse_loads: bool = False  # loads fail in the engine (500, "Call to add_lora method failed")
    unhealthy: bool = False  # /health answers 503
    load_latency_ms: float = 0.0  # engine time of each load (the per-name lock is held meanwhile)
    unload_latency_ms: float = 0.0
    token_latency_ms: float = 0.0  # generation time per completion token

    def update(self, values: Mapping[str, Any]) -> None:
        """Set the named knobs (unknown names raise KeyError, wrong types ValueError)."""
        known = {f.name: f for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise KeyError(key)
            current = getattr(self, key)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
                setattr(self, key, value)
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{key} must be a number")
                if value < 0 or ((key.endswith("_rate") or key.endswith("rate_500")) and value > 1):
                    raise ValueError(f"{key} out of range")
                setattr(self, key, float(value))

    def as_dict(self) -> dict[str, Any]:
        """The knobs as JSON-ready values."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class PodConfig:
    """What a simulated vLLM server is started with."""

    model: str
    served_model_names: tuple[str, ...] = ()
    enable_lora: bool = True
    max_loras: int = 1
    max_cpu_loras: int | None = None
    max_lora_rank: int = 16
    lora_modules: tuple[LoraModule, ...] = ()
    runtime_lora_updating: bool = True
    max_model_len: int | None = None
    api_key: str | None = field(default=None, repr=False)
    control_endpoint: bool = True
    seed: int = 0
    faults: FaultKnobs = field(default_factory=FaultKnobs, compare=False)

    def __post_init__(self) -> None:
        if self.max_loras < 1:
            raise ServeArgsError(f"max_loras must be >= 1, got {self.max_loras}")
        if self.max_lora_rank not in VALID_MAX_LORA_RANKS:
            raise ServeArgsError(f"max_lora_rank must be one of {list(VALID_MAX_LORA_RANKS)}")
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            raise ServeArgsError(f"max_cpu_loras ({self.max_cpu_loras}) must be >= max_loras ({self.max_loras})")

    @property
    def names(self) -> tuple[str, ...]:
        """Served base model names (`--served-model-name`, else the model)."""
        return self.served_model_names or (self.model,)

    @property
    def cpu_loras(self) -> int:
        """`--max-cpu-loras`, defaulting to `--max-loras`."""
        return self.max_cpu_loras if self.max_cpu_loras is not None else self.max_loras

    def with_faults(self) -> PodConfig:
        """A copy with its own (copied) fault knobs, for a new pod."""
        return replace(self, faults=FaultKnobs(**self.faults.as_dict()))


def build_parser() -> argparse.ArgumentParser:
    """The `lora-vllm-sim` argument parser."""
    p = argparse.ArgumentParser(
        prog="lora-vllm-sim",
        description="A vLLM server simulator for the runtime LoRA API (no GPU): one process, one or many pods.",
    )
    p.add_argument("model_tag", nargs="?", help="model (as in `vllm serve MODEL`)")
    p.add_argument("--model", help="base model: a directory (read for max-model-len and tokenizer) or a name")
    p.add_argument("--served-model-name", nargs="+", default=None, help="names the base model is served under")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, action="append", default=None, help="port to listen on; repeat for several pods")
    p.add_argument("--listen", action="append", default=[], metavar="HOST:PORT", help="one more pod at HOST:PORT")
    p.add_argument("--pods", type=int, default=None, help="start N pods on consecutive ports from the first --port")
    p.add_argument("--enable-lora", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-loras", type=int, default=1)
    p.add_argument("--max-cpu-loras", type=int, default=None)
    p.add_argument("--max-lora-rank", type=int, default=16, choices=VALID_MAX_LORA_RANKS)
    p.add_argument("--lora-modules", nargs="+", default=None, metavar="NAME=PATH", help="adapters loaded at start")
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1 routes")
    p.add_argument(
        "--runtime-lora-updating",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="expose /v1/load_lora_adapter etc. (default: VLLM_ALLOW_RUNTIME_LORA_UPDATING if set, else on)",
    )
    p.add_argument("--control-endpoint", action=argparse.BooleanOptionalAction, default=True,
                   help="serve /_sim/... (state, faults, restart) on each pod's port")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault dice")
    g = p.add_argument_group("faults (also settable at run time: POST /_sim/faults)")
    g.add_argument("--load-latency-ms", type=float, default=0.0)
    g.add_argument("--unload-latency-ms", type=float, default=0.0)
    g.add_argument("--token-latency-ms", type=float, default=0.0)
    g.add_argument("--error-rate-500", type=float, default=0.0)
    g.add_argument("--hang-rate", type=float, default=0.0)
    g.add_argument("--hang-seconds", type=float, default=0.0)
    g.add_argument("--refuse-loads", action="store_true")
    return p


def _drop_unknown_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Remove vLLM flags the simulator ignores (`--dtype float32`), with their value if they have one.

    Done before argparse so that an ignored flag's value is never taken for the positional model.
    """
    known = set(parser._option_string_actions)
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    items = list(argv)
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            name, eq, value = item.partition("=")
            item = name.replace("_", "-") + eq + value  # vLLM accepts --max_loras as --max-loras
        name = item.split("=", 1)[0]
        if item.startswith("--") and name not in known:
            dropped.append(item)
            if "=" not in item and i + 1 < len(items) and not items[i + 1].startswith("-"):
                i += 1
                dropped.append(items[i])
            i += 1
            continue
        kept.append(item)
        i += 1
    return kept, dropped


def config_from_args(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None
) -> tuple[PodConfig, list[tuple[str, int]], list[str]]:
    """Parse a simulator command line: (pod config, listen addresses, ignored vLLM flags)."""
    env = os.environ if env is None else env
    parser = build_parser()
    kept, ignored = _drop_unknown_flags(parser, argv)
    args, unknown = parser.parse_known_args(kept)
    unknown = ignored + unknown
    model = args.model_tag or args.model
    if not model:
        parser.error("a model is required (--model NAME or a positional MODEL)")
    runtime = args.runtime_lora_updating
    if runtime is None:
        raw = env.get(RUNTIME_UPDATING_ENV)
        runtime = True if raw is None else runtime_updating_from_env(raw)
    try:
        modules = tuple(parse_lora_module(v) for v in (args.lora_modules or []))
        faults = FaultKnobs(
            error_rate_500=args.error_rate_500,
            hang_rate=args.hang_rate,
            hang_seconds=args.hang_seconds,
            refuse_loads=args.refuse_loads,
            load_latency_ms=args.load_latency_ms,
            unload_latency_ms=args.unload_latency_ms,
            token_latency_ms=args.token_latency_ms,
        )
        config = PodConfig(
            model=model,
            served_model_names=tuple(args.served_model_name or ()),
            enable_lora=args.enable_lora,
            max_loras=args.max_loras,
            max_cpu_loras=args.max_cpu_loras,
            max_lora_rank=args.max_lora_rank,
            lora_modules=modules,
            runtime_lora_updating=runtime,
            max_model_len=args.max_model_len,
            api_key=args.api_key or env.get("VLLM_API_KEY") or None,
            control_endpoint=args.control_endpoint,
            seed=args.seed,
            faults=faults,
        )
    except ServeArgsError as exc:
        parser.error(str(exc))
    listen: list[tuple[str, int]] = []
    ports = args.port or []
    if args.pods:
        start = ports[0] if ports else 8000
        ports = [start + i for i in range(args.pods)] if start else [0] * args.pods
    listen.extend((args.host, port) for port in ports)
    for item in args.listen:
        host, sep, port_text = item.rpartition(":")
        if not sep or not port_text.isdigit():
            parser.error(f"--listen expects HOST:PORT, got {item!r}")
        listen.append((host.strip("[]") or args.host, int(port_text)))
    if not listen:
        listen.append((args.host, 8000))
    return config, listen, unknown
