"""The stage stage: put the files of placed HuggingFace and S3 adapters into the adapter store.

vLLM reads an adapter from a path, so a remote adapter must be in the store (a volume the pods
mount at the same path) before any pod is told to load it. Only placed adapters are staged (an
adapter that fits nowhere costs no download), and only by the leader (standbys never download).
A failed staging becomes that adapter's reason; the others go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from lora_controller.reconcile.discovering import DiscoveryState
from lora_controller.reconcile.refs import CrRef
from lora_controller.reconcile.world import Wanted
from lora_controller.reconcile.writer import Writer
from lora_controller.scheduler.model import AdapterKey, Schedule
from lora_controller.sources.errors import SourceError


async def stage_placed(writer: Writer, schedule: Schedule, wanted: Mapping[AdapterKey, Wanted],
                       discoveries: Mapping[CrRef, DiscoveryState]) -> dict[AdapterKey, str]:
    """Stage every placed adapter that is not in the store yet; returns the failures."""
    todo = [wanted[k] for k, pods in schedule.placement.items()
            if pods and k in wanted and not wanted[k].staged]
    if not todo or not writer.acts:
        return {}
    errors: dict[AdapterKey, str] = {}

    async def one(w: Wanted) -> None:
        disc = discoveries.get(w.ref)
        try:
            await writer.stage(w, disc.credentials if disc else None)
        except SourceError as exc:
            errors[w.key] = f"staging failed ({exc.reason}): {exc.message}"

    await asyncio.gather(*(one(w) for w in todo))
    return errors
