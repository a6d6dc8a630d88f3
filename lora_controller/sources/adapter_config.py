"""Pure parsing of adapter_config.json and the base-model check vLLM does not do.

vLLM reads `r`, `lora_alpha` and `target_modules` from a PEFT LoRA config and fails a load without
them; it never compares `base_model_name_or_path` with the model it serves, so the controller does:
equal ignoring case and trailing '/', or equal last path segment (people write local paths such as
/models/Llama-2-7b-hf there). An absent or empty value is accepted.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lora_controller.sources.errors import InvalidAdapterConfig
from lora_controller.sources.model import AdapterConfig

MAX_CONFIG_BYTES = 1 << 20


def _positive_int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidAdapterConfig(
            f"{key!r} must be a positive integer, found {_short(value)}"
        )
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if value is not None else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."


def parse_adapter_config(raw: bytes) -> AdapterConfig:
    """The fields the controller needs; raises InvalidAdapterConfig saying what is wrong."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidAdapterConfig(f"adapter_config.json is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidAdapterConfig(f"adapter_config.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidAdapterConfig("adapter_config.json must hold a JSON object")
    peft_type = data.get("peft_type")
    if peft_type is not None and str(peft_type).upper() != "LORA":
        raise InvalidAdapterConfig(
            f"peft_type is {_short(peft_type)}: vLLM serves LoRA adapters only"
        )
    r = _positive_int(data, "r")
    alpha = data.get("lora_alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha) \
            or alpha <= 0:
        raise InvalidAdapterConfig(
            f"'lora_alpha' must be a positive number, found {_short(alpha)}"
        )
    modules = data.get("target_modules")
    targets: tuple[str, ...] | str
    if isinstance(modules, str) and modules:
        targets = modules
    elif isinstance(modules, list) and modules and all(isinstance(m, str) and m for m in modules):
        targets = tuple(modules)
    else:
        raise InvalidAdapterConfig(
            f"'target_modules' must be a non-empty list of module names (or a regex string), "
            f"found {_short(modules)}"
        )
    base = data.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise InvalidAdapterConfig(
            f"'base_model_name_or_path' must be a string, found {_short(base)}"
        )
    rank = r
    pattern = data.get("rank_pattern")
    if pattern:
        if not isinstance(pattern, dict):
            raise InvalidAdapterConfig("'rank_pattern' must map module names to ranks")
        for key in pattern:
            rank = max(rank, _positive_int(pattern, key))
    return AdapterConfig(
        r=r, lora_alpha=float(alpha), target_modules=targets,
        base_model_name_or_path=base or None, rank=rank,
    )


def _norm(name: str) -> str:
    return name.strip().rstrip("/").casefold()


def base_model_matches(config_base: str | None, spec_base: str) -> bool:
    """True when the adapter's base model is compatible with spec.baseModel (see module doc)."""
    if not config_base or not config_base.strip():
        return True
    a, b = _norm(config_base), _norm(spec_base)
    return a == b or a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]
