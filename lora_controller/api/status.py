"""A LoraAdapter's status: what the pods' /v1/models confirm, written by the controller only."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lora_controller.api.base import ApiModel, Phase


class FailedAdapter(ApiModel):
    name: str = Field(description="The adapter that is not (fully) served.")
    reason: str = Field(description="Why, in words a person can act on.")


class PodAssignment(ApiModel):
    pod: str = Field(description="Name of the vLLM pod.")
    adapters: list[str] = Field(
        default_factory=list, description="Adapters of this resource confirmed loaded on that pod."
    )


class Condition(ApiModel):
    """A Kubernetes API convention condition (metav1.Condition)."""

    type: str = Field(max_length=316, description="Ready, Progressing, Degraded, Conflict, ...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was set for."
    )
    last_transition_time: str = Field(
        description="When the condition last changed status (RFC 3339)."
    )
    reason: str = Field(max_length=1024, description="CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=32768, description="Details for a person.")


class LoraAdapterStatus(ApiModel):
    """What the pods' /v1/models confirm, written by the controller only."""

    phase: Phase | None = Field(
        default=None,
        description="Pending until the source is first read; Loading while work is in flight; "
        "Ready when every desired replica is confirmed by the pods' /v1/models; Partial when some "
        "are and some failed; Failed when none could be.",
    )
    loaded_adapters: list[str] = Field(
        default_factory=list,
        description="Adapters confirmed loaded on at least one pod (by /v1/models).",
    )
    failed_adapters: list[FailedAdapter] = Field(
        default_factory=list, description="Adapters not (fully) served, each with a reason."
    )
    pod_assignments: list[PodAssignment] = Field(
        default_factory=list, description="Per pod, the adapters confirmed loaded there."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing, Degraded, Conflict (API conventions).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this status was computed for."
    )
    desired_count: int = Field(default=0, description="Adapters selected by discovery.")
    loaded_count: int = Field(
        default=0, description="Adapters loaded on at least one pod: the length of loadedAdapters "
        "(before truncation).")
    failed_count: int = Field(default=0, description="Adapters in failedAdapters.")
    truncated: bool = Field(
        default=False,
        description="True when the lists above were shortened to keep the object small; counts "
        "stay exact and the router API has the full detail.",
    )
