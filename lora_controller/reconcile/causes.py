"""Causes: what a watch event means for the controller, decided without side effects.

In the style of kopf's cause detection: an event handler asks these functions whether an event
matters and which namespace it concerns, then only enqueues that namespace (a reconcile gets a
key, never an event, and reads everything else from the caches).

- A LoraAdapter matters when it is added or deleted, when its spec changes (generation), when it
  is being deleted or its finalizers change, and on a periodic resync (the informer hands the same
  object as old and new). Status-only updates (the controller's own writes) do not.
- A Pod matters when what the controller reads from it changed (see `TargetPod`); the observer
  follows only pods whose vLLM serves a model with LoRA enabled.
- A Secret matters whenever it changes: it may hold a resource's credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lora_controller.reconcile.pods import TargetPod

JSON = dict[str, Any]


def namespace_of(obj: JSON) -> str:
    """The namespace an object lives in (the reconcile key)."""
    return str((obj.get("metadata") or {}).get("namespace", ""))


def cr_update_matters(old: JSON, new: JSON) -> bool:
    """Whether a LoraAdapter update needs a reconcile (not a status-only write)."""
    if old is new:  # a resync hands the cached object twice
        return True
    before, after = old.get("metadata") or {}, new.get("metadata") or {}
    return any(before.get(field) != after.get(field)
               for field in ("generation", "deletionTimestamp", "finalizers"))


@dataclass(frozen=True)
class PodEffect:
    """What a pod event asks for: a reconcile of its namespace, and whether to poll its vLLM."""

    enqueue: bool
    follow: bool


def pod_seen(before: TargetPod | None, after: TargetPod) -> PodEffect:
    """A pod was added or updated; `before` is what the controller knew of it."""
    return PodEffect(enqueue=before is None or before != after,
                     follow=bool(after.served_models) and after.lora_enabled)
