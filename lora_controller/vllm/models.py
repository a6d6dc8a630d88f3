"""What a vLLM pod reports about itself, parsed into plain values: its model list and LoRA request info.

`GET /v1/models` is the truth for placement (an adapter is loaded when it is listed there, with `root`
the path it was loaded from and `parent` its base model); `vllm:lora_requests_info` in `/metrics` only
shows adapters with requests in flight. Parsing is pure so it can be tested on recorded bodies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

LORA_REQUESTS_INFO = "vllm:lora_requests_info"
MAX_MODEL_ENTRIES = 10_000


class ResponseFormatError(ValueError):
    """A 200 answer whose body is not what vLLM sends."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One card of `/v1/models`: a base model (`parent` None) or a LoRA adapter."""

    id: str
    root: str | None
    parent: str | None
    max_model_len: int | None = None
    owned_by: str | None = None

    @property
    def is_adapter(self) -> bool:
        """Adapters have a parent (the base model name); base models do not."""
        return self.parent is not None


@dataclass(frozen=True, slots=True)
class ModelList:
    """A pod's `/v1/models`, split into base models and adapters (in the pod's order)."""

    base_models: tuple[ModelEntry, ...]
    adapters: tuple[ModelEntry, ...]

    @property
    def adapter_names(self) -> tuple[str, ...]:
        """Adapter ids in registration order."""
        return tuple(a.id for a in self.adapters)

    def adapter(self, name: str) -> ModelEntry | None:
        """The adapter card named `name`, if listed."""
        for entry in self.adapters:
            if entry.id == name:
                return entry
        return None


def model_cards(data: Any, *, max_entries: int = MAX_MODEL_ENTRIES) -> Sequence[Any]:
    """The cards of a `GET /v1/models` JSON (OpenAI list shape), at most `max_entries`."""
    cards = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(cards, Sequence) or isinstance(cards, str | bytes):
        raise ResponseFormatError("/v1/models answer has no 'data' list")
    if len(cards) > max_entries:
        raise ResponseFormatError(f"it lists more than {max_entries} models ({len(cards)})")
    return cards


def parse_card(card: Any) -> ModelEntry:
    """One card of `/v1/models`."""
    if not isinstance(card, Mapping) or not isinstance(card.get("id"), str):
        raise ResponseFormatError("/v1/models card without a string 'id'")
    parent = card.get("parent")
    root = card.get("root")
    mml = card.get("max_model_len")
    owned = card.get("owned_by")
    return ModelEntry(
        id=card["id"],
        root=root if isinstance(root, str) else None,
        parent=parent if isinstance(parent, str) else None,
        max_model_len=mml if isinstance(mml, int) and not isinstance(mml, bool) else None,
        owned_by=owned if isinstance(owned, str) else None,
    )


def split_entries(entries: Sequence[ModelEntry]) -> ModelList:
    """Entries in the pod's order, split into base models and adapters."""
    return ModelList(base_models=tuple(e for e in entries if not e.is_adapter),
                     adapters=tuple(e for e in entries if e.is_adapter))


def parse_model_list(data: Any, *, max_entries: int = MAX_MODEL_ENTRIES) -> ModelList:
    """Parse the JSON of `GET /v1/models` (OpenAI list shape); at most `max_entries` cards."""
    return split_entries([parse_card(c) for c in model_cards(data, max_entries=max_entries)])


class LoadOutcome(StrEnum):
    """How a load request ended, all successes."""

    LOADED = "loaded"
    RELOADED = "reloaded"  # load_inplace on an adapter already registered
    ALREADY_LOADED = "already_loaded"


class UnloadOutcome(StrEnum):
    """How an unload request ended, all successes."""

    UNLOADED = "unloaded"
    NOT_LOADED = "not_loaded"


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A successful load (or one that found the adapter already registered)."""

    name: str
    path: str
    outcome: LoadOutcome
    message: str = ""


@dataclass(frozen=True, slots=True)
class UnloadResult:
    """A successful unload (or one that found nothing to unload)."""

    name: str
    outcome: UnloadOutcome
    message: str = ""


@dataclass(frozen=True, slots=True)
class LoraRequestsInfo:
    """One series of `vllm:lora_requests_info`: adapters with requests running / waiting at `timestamp`."""

    max_lora: int | None
    running: tuple[str, ...]
    waiting: tuple[str, ...]
    timestamp: float


def _split_names(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.split(",") if part)


def parse_lora_requests_info(text: str) -> list[LoraRequestsInfo]:
    """All series of `vllm:lora_requests_info` in a `/metrics` text, oldest first (by their value).

    vLLM sets the gauge to the current time each time it records a label set and never removes old
    series, so the newest value is the current state. An idle pod may have no series at all.
    """
    wanted = "\n".join(
        line for line in text.splitlines() if LORA_REQUESTS_INFO in line
    )
    series: list[LoraRequestsInfo] = []
    if not wanted:
        return series
    for family in text_string_to_metric_families(wanted + "\n"):
        for sample in family.samples:
            if sample.name != LORA_REQUESTS_INFO:
                continue
            labels = sample.labels
            max_lora_raw = labels.get("max_lora", "")
            value = float(sample.value)
            series.append(
                LoraRequestsInfo(
                    max_lora=int(max_lora_raw) if max_lora_raw.isdigit() else None,
                    running=_split_names(labels.get("running_lora_adapters", "")),
                    waiting=_split_names(labels.get("waiting_lora_adapters", "")),
                    timestamp=value if math.isfinite(value) else 0.0,
                )
            )
    series.sort(key=lambda s: s.timestamp)
    return series
