"""Typed references: which resource, which pod, which backoff, without parsing strings.

Small immutable tuples (hashable, ordered, as cheap as the strings they replace). `str()` gives the
`namespace/name` form people read in logs and metrics; nothing ever parses it back.
"""

from __future__ import annotations

from typing import NamedTuple

from lora_controller.api.types import LoraAdapter


class CrRef(NamedTuple):
    """A LoraAdapter resource."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, cr: LoraAdapter) -> CrRef:
        return cls(cr.metadata.namespace, cr.metadata.name)


class PodRef(NamedTuple):
    """A Pod (its vLLM server)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class PodBackoff(NamedTuple):
    """Backoff of every action on a pod (the pod failed as a whole: timeout, 5xx, refused)."""

    pod: PodRef


class AdapterBackoff(NamedTuple):
    """Backoff of one adapter's actions on one pod (the adapter failed there: invalid, conflict)."""

    pod: PodRef
    adapter: str


BackoffKey = PodBackoff | AdapterBackoff
