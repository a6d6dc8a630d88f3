"""What the controller remembers of a namespace between reconciles.

Everything here can be recomputed from the cluster (a restarted controller starts empty and
converges to the same place); it exists so that a reconcile is incremental (the scheduler's index),
so that status keeps saying why (last errors, preemptions), and so that failures back off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lora_controller.reconcile.backoff import Backoff
from lora_controller.reconcile.ledger import Ledger
from lora_controller.reconcile.refs import CrRef
from lora_controller.reconcile.scaling import Scaled
from lora_controller.reconcile.status import AdapterReport
from lora_controller.reconcile.wanting import Selection
from lora_controller.reconcile.world import Wanted
from lora_controller.scheduler import Scheduler
from lora_controller.scheduler.model import AdapterKey, Preemption, Schedule
from lora_controller.scheduler.scaling import DemandSignal, ReplicaPlanner


@dataclass
class NamespaceState:
    scheduler: Scheduler = field(default_factory=Scheduler)
    schedule: Schedule | None = None
    selection: Selection = field(default_factory=lambda: Selection({}, {}))
    by_name: dict[str, list[Wanted]] = field(default_factory=dict)  # adapter name -> wanted
    reports: dict[CrRef, list[AdapterReport]] = field(default_factory=dict)
    last_errors: dict[tuple[str, str], str] = field(default_factory=dict)  # (pod, adapter) -> why
    loaded_once: set[tuple[str, str]] = field(default_factory=set)  # (pod, adapter) seen confirmed
    preempted: dict[AdapterKey, Preemption] = field(default_factory=dict)  # victim -> eviction
    backoff: Backoff = field(default_factory=Backoff)
    planner: ReplicaPlanner = field(default_factory=ReplicaPlanner)
    heat: DemandSignal = field(default_factory=DemandSignal)  # coarse rates for placement
    scaled: dict[AdapterKey, Scaled] = field(default_factory=dict)  # demand-scaled: count, why
    ledger: Ledger | None = None  # None: not read yet
    ledger_read_acting: bool = False  # read while this replica led (a new leader reads it again)

    def forget_pods(self, alive: set[str]) -> None:
        """Forget what concerned pods that are gone (bounded memory under pod churn)."""
        self.loaded_once = {k for k in self.loaded_once if k[0] in alive}
        self.last_errors = {k: v for k, v in self.last_errors.items() if k[0] in alive}
        self.backoff.forget_pods(alive)
