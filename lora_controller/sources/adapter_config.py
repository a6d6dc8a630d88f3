"""Pure parsing of adapter_config.json and the base-model check vLLM does not do.

vLLM reads `r`, `lora_alpha` and `target_modules` from a PEFT LoRA config and fails a load without
them; it never compares `base_model_name_or_path` with the model it serves, so the controller does:
equal ignoring case and trailing '/', or equal last path segment (people write local paths such as
/models/Llama-2-7b-hf there). An absent or empty value is accepted.

The file comes from a source the controller does not control, so it is parsed defensively: at most
MAX_CONFIG_BYTES, nested at most MAX_CONFIG_DEPTH levels (checked before parsing, so a "[[[[..."
file never reaches the recursive parser), and an integer of more than MAX_NUMBER_DIGITS digits
is kept as a `_LongNumber` marker (Python refuses to convert more than 4,300 digits, and no field
here is ever that large), so the field check names the field. Every problem is an
InvalidAdapterConfig saying what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from lora_controller.sources.errors import InvalidAdapterConfig
from lora_controller.sources.model import AdapterConfig

MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32  # a PEFT config nests 3 levels deep
MAX_NUMBER_DIGITS = 30

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class _LongNumber:
    """A JSON integer too long to be any real value; kept so that the field check can name it."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __str__(self) -> str:
        return f"a {self.digits}-digit number"


def _parse_int(text: str) -> int | _LongNumber:
    digits = len(text.lstrip("-"))
    return _LongNumber(digits) if digits > MAX_NUMBER_DIGITS else int(text)


def nesting_depth(raw: bytes) -> int:
    """How deeply `raw` nests arrays and objects, brackets inside strings ignored (linear time)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def _load(raw: bytes) -> Any:
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidAdapterConfig(
            f"adapter_config.json is larger than {MAX_CONFIG_BYTES} bytes (the limit for a config)"
        )
    if nesting_depth(raw) > MAX_CONFIG_DEPTH:
        raise InvalidAdapterConfig(
            f"adapter_config.json is nested deeper than {MAX_CONFIG_DEPTH} levels: it is not a "
            f"PEFT LoRA config"
        )
    try:
        return json.loads(raw.decode("utf-8"), parse_int=_parse_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidAdapterConfig(f"adapter_config.json is not valid JSON: {exc}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise InvalidAdapterConfig(
            f"adapter_config.json cannot be read: {type(exc).__name__}: {str(exc)[:120]}"
        ) from None


def _positive_int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidAdapterConfig(
            f"{key!r} must be a positive integer, found {_short(value)}"
        )
    return value


def _short(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, _LongNumber):
        return str(value)
    try:
        text = json.dumps(value, default=lambda v: f"<{v}>")
    except (ValueError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def parse_adapter_config(raw: bytes) -> AdapterConfig:
    """The fields the controller needs; raises InvalidAdapterConfig saying what is wrong."""
    data = _load(raw)
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
