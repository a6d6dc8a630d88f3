"""The reconciler's Prometheus metrics, in one place.

Per-reconcile durations are the runner's (controller-runtime's `controller_runtime_reconcile_*`);
these are the product's own: adapters by phase, loads and unloads (executing.py), drift repairs,
preemptions and each pod's use of its capacity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import Counter, Gauge

from lora_controller.api.types import Phase
from lora_controller.reconcile.pods import TargetPod
from lora_controller.reconcile.status import AdapterReport, adapter_phase
from lora_controller.reconcile.world import Wanted, adapter_memory
from lora_controller.scheduler.model import AdapterKey, PodKey, Schedule

ADAPTERS_BY_PHASE = Gauge("lora_controller_adapters", "Adapters by phase of their LoraAdapter.",
                          ["phase"])
DRIFT_CORRECTIONS = Counter("lora_controller_drift_corrections_total",
                            "Adapters reloaded because a pod lost them (restart, manual unload).")
PREEMPTIONS = Counter("lora_controller_preemptions_total",
                      "Adapter replicas evicted for higher priority.")
POD_SLOTS_USED = Gauge("lora_controller_pod_slots_used", "Adapter slots in use per pod.", ["pod"])
POD_MEMORY_USED = Gauge("lora_controller_pod_memory_used_bytes",
                        "Adapter memory placed per pod.", ["pod"])

_PHASES = (Phase.READY, Phase.LOADING, Phase.PARTIAL, Phase.FAILED)


def observe_phases(reports: Iterable[Sequence[AdapterReport]]) -> None:
    """Set the adapters-by-phase gauge from every resource's latest reports."""
    counts = dict.fromkeys(_PHASES, 0)
    for per_cr in reports:
        for report in per_cr:
            counts[adapter_phase(report)] += 1
    for phase, count in counts.items():
        ADAPTERS_BY_PHASE.labels(phase.value).set(count)


def observe_pod_usage(schedule: Schedule, wanted: Mapping[AdapterKey, Wanted],
                      pods: Sequence[TargetPod]) -> None:
    for pod in pods:
        keys = schedule.get_pod_adapters(PodKey(pod.name))
        POD_SLOTS_USED.labels(str(pod.ref)).set(len(keys))
        POD_MEMORY_USED.labels(str(pod.ref)).set(
            sum(adapter_memory(wanted[k].cr, wanted[k].adapter) for k in keys if k in wanted))


def forget_pod(pod: str) -> None:
    """Drop a vanished pod's series (bounded cardinality under pod churn)."""
    for gauge in (POD_SLOTS_USED, POD_MEMORY_USED):
        try:
            gauge.remove(pod)
        except KeyError:
            pass
