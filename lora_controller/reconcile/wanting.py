"""What the namespace's resources want served, with name conflicts between resources resolved (pure).

Each live resource wants the adapters its discovery selected. vLLM knows adapters by name only, so
two resources that declare the same adapter name for the same base model on pods that both select
would fight over it: the older resource (creation time, then name) keeps the name, and the newer
one reports a conflict a person can fix (rename, or narrow a podSelector).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lora_controller.api.types import LoraAdapter, SourceType
from lora_controller.reconcile.pods import TargetPod, selector_matches
from lora_controller.reconcile.refs import CrRef
from lora_controller.reconcile.world import Wanted
from lora_controller.scheduler.model import AdapterKey
from lora_controller.sources.model import DiscoveredAdapter, Discovery

StorePath = Callable[[LoraAdapter, DiscoveredAdapter], str]
"""Where the adapter store keeps an adapter's version (what vLLM is told to read)."""


@dataclass(frozen=True)
class Selection:
    wanted: Mapping[AdapterKey, Wanted]
    conflicts: Mapping[CrRef, list[str]]

    def by_name(self) -> dict[str, list[Wanted]]:
        out: dict[str, list[Wanted]] = {}
        for w in self.wanted.values():
            out.setdefault(w.adapter.name, []).append(w)
        return out


def overlap(a: LoraAdapter, b: LoraAdapter, pods: Sequence[TargetPod]) -> bool:
    """Whether two resources may put adapters on a common pod."""
    sa, sb = a.spec.deployment().pod_selector, b.spec.deployment().pod_selector
    for p in pods:
        if selector_matches(sa, p.labels) and selector_matches(sb, p.labels) and (
                p.serves(a.spec.base_model) and p.serves(b.spec.base_model)):
            return True
    # With no pods yet, the same base model is taken as overlapping (stable, no flapping).
    return not pods and a.spec.base_model == b.spec.base_model


def wanted_of(cr: LoraAdapter, adapter: DiscoveredAdapter, store_path: StorePath) -> Wanted:
    """Local adapters are read where they are; others from their folder in the adapter store."""
    if adapter.source_type is SourceType.LOCAL:
        return Wanted(cr, adapter, adapter.location, staged=True)
    return Wanted(cr, adapter, store_path(cr, adapter), staged=False)


def select(live: Sequence[LoraAdapter], discoveries: Mapping[CrRef, Discovery | None],
           pods: Sequence[TargetPod], store_path: StorePath) -> Selection:
    """Adapters each live resource selects, oldest resource first for contested names."""
    wanted: dict[AdapterKey, Wanted] = {}
    conflicts: dict[CrRef, list[str]] = {}
    claimed: dict[str, LoraAdapter] = {}
    for cr in sorted(live, key=lambda c: (c.metadata.creation_timestamp or "", c.metadata.name)):
        found = discoveries.get(CrRef.of(cr))
        if found is None:
            continue
        for adapter in found.adapters:
            holder = claimed.get(adapter.name)
            if holder is not None and overlap(holder, cr, pods):
                conflicts.setdefault(CrRef.of(cr), []).append(
                    f"adapter {adapter.name} is already served by LoraAdapter "
                    f"{CrRef.of(holder)} on the same pods; rename it or narrow one podSelector")
                continue
            claimed.setdefault(adapter.name, cr)
            w = wanted_of(cr, adapter, store_path)
            wanted[w.key] = w
    return Selection(wanted, conflicts)
