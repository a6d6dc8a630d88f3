"""Small builders shared by the sources tests."""

from __future__ import annotations

from typing import Any

from lora_controller.api.types import LoraAdapterSpec

BASE = "meta-llama/Llama-2-7b-hf"


def spec(source_type: str, repository: str, *, base_model: str = BASE, **source: Any) -> LoraAdapterSpec:
    """A LoraAdapterSpec for `repository` (source fields in camelCase or snake_case)."""
    return LoraAdapterSpec.model_validate({
        "baseModel": base_model,
        "adapterSource": {"type": source_type, "repository": repository, **source},
    })
