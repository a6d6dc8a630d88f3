"""The request bodies vLLM validates with pydantic, declared the same way so errors come out the same.

FastAPI validates a route's body model with pydantic in python mode; declaring the same fields, types
and defaults under the same class names makes pydantic produce vLLM's error dicts (type, loc, msg,
input) for wrong types and missing fields. The SageMaker `/adapters` alias has its own model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator


class LoadLoRAAdapterRequest(BaseModel):
    """Body of `POST /v1/load_lora_adapter`."""

    lora_name: str
    lora_path: str
    load_inplace: bool = False
    is_3d_lora_weight: bool = False


class UnloadLoRAAdapterRequest(BaseModel):
    """Body of `POST /v1/unload_lora_adapter`."""

    lora_name: str
    lora_int_id: int | None = Field(default=None)


class CompletionRequest(BaseModel):
    """The fields of `POST /v1/completions` the simulator uses (vLLM accepts and ignores extra ones)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: list[int] | list[list[int]] | str | list[str] | None = None
    max_tokens: int | None = 16
    temperature: float | None = None
    n: int = 1
    stream: bool | None = False
    seed: int | None = None
    user: str | None = None


class SageMakerRegisterLoRAAdapterRequest(BaseModel):
    """Body of the SageMaker alias `POST /adapters`."""

    name: str
    src: str
    preload: bool = True
    load_inplace: bool = False
    is_3d_lora_weight: bool = False

    @field_validator("name", mode="after")
    @classmethod
    def _name_not_empty(cls, value: str) -> str:
        if value == "":
            raise ValueError("The parameter name cannot be an empty string.")
        return value

    @field_validator("src", mode="after")
    @classmethod
    def _src_not_empty(cls, value: str) -> str:
        if value == "":
            raise ValueError("The parameter src cannot be an empty string.")
        return value


LOAD_ADAPTER: TypeAdapter[LoadLoRAAdapterRequest] = TypeAdapter(LoadLoRAAdapterRequest)
UNLOAD_ADAPTER: TypeAdapter[UnloadLoRAAdapterRequest] = TypeAdapter(UnloadLoRAAdapterRequest)
COMPLETION: TypeAdapter[CompletionRequest] = TypeAdapter(CompletionRequest)


def body_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """pydantic errors as FastAPI reports them for a body parameter: `loc` prefixed with `body`."""
    out: list[dict[str, Any]] = []
    for err in errors:
        item = dict(err)
        item["loc"] = ("body", *tuple(item.get("loc", ())))
        out.append(item)
    return out
