"""The LoRA scheduler: pure, deterministic, capacity-aware placement with priority and preemption."""

from lora_controller.scheduler.model import (
    AdapterDemand,
    AdapterKey,
    AdapterStatus,
    Move,
    Placement,
    PodCapacity,
    PodKey,
    Preemption,
    PreemptionPolicy,
    Schedule,
    Shortfall,
    Strategy,
)
from lora_controller.scheduler.placing import Scheduler, schedule, schedule_adapter
from lora_controller.scheduler.scaling import (
    DemandSignal,
    RateEstimator,
    ReplicaPlanner,
    Scaling,
)

__all__ = [
    "AdapterDemand",
    "AdapterKey",
    "AdapterStatus",
    "DemandSignal",
    "Move",
    "Placement",
    "PodCapacity",
    "PodKey",
    "Preemption",
    "PreemptionPolicy",
    "RateEstimator",
    "ReplicaPlanner",
    "Scaling",
    "Schedule",
    "Scheduler",
    "Shortfall",
    "Strategy",
    "schedule",
    "schedule_adapter",
]
