"""What every model of the API shares: camelCase on the wire, CEL rules, the enums."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


def rules(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """CEL validation rules (rule, message[, fieldPath]) for the generated schema."""
    out = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) == 3:
            entry["fieldPath"] = rule[2]
        out.append(entry)
    return {"x-kubernetes-validations": out}


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False,
        serialize_by_alias=True,
    )


class SourceType(StrEnum):
    HUGGINGFACE = "huggingface"
    S3 = "s3"
    LOCAL = "local"


class PreemptionPolicy(StrEnum):
    LOWER_PRIORITY = "LowerPriority"
    NONE = "None"


class Phase(StrEnum):
    PENDING = "Pending"
    LOADING = "Loading"
    READY = "Ready"
    PARTIAL = "Partial"
    FAILED = "Failed"
