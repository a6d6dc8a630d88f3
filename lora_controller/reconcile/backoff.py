"""Backoff of failed loads and unloads (pure bookkeeping on an injected time).

Failures back off exponentially (1 s doubling to 60 s): a pod-wide failure (timeout, 5xx,
refused: `retryable`) delays every action on that pod; an adapter's own failure (invalid,
conflicting name) delays that adapter there only. A success clears the adapter's entry, and the
pod's entry when nothing else failed on that pod in the same execution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lora_controller.reconcile.executing import Outcome
from lora_controller.reconcile.planning import Action
from lora_controller.reconcile.refs import AdapterBackoff, BackoffKey, PodBackoff

FIRST_DELAY = 1.0
MAX_DELAY = 60.0


def keys_of(action: Action) -> tuple[PodBackoff, AdapterBackoff]:
    return PodBackoff(action.pod), AdapterBackoff(action.pod, action.name)


@dataclass
class Backoff:
    entries: dict[BackoffKey, tuple[float, float]] = field(default_factory=dict)  # (until, delay)

    def blocks(self, action: Action, now: float) -> bool:
        return any(self.entries.get(k, (0.0, 0.0))[0] > now for k in keys_of(action))

    def split(self, actions: Sequence[Action], now: float) -> tuple[tuple[Action, ...], int]:
        """The actions that may run now, and how many wait for their backoff."""
        runnable = tuple(a for a in actions if not self.blocks(a, now))
        return runnable, len(actions) - len(runnable)

    def record(self, outcomes: Iterable[Outcome], now: float) -> None:
        outcomes = list(outcomes)
        failed: set[BackoffKey] = set()
        for o in outcomes:
            pod_key, adapter_key = keys_of(o.action)
            if o.ok:
                self.entries.pop(adapter_key, None)
            else:
                failed.add(pod_key if o.retryable else adapter_key)
        for o in outcomes:
            pod_key, _ = keys_of(o.action)
            if o.ok and pod_key not in failed:
                self.entries.pop(pod_key, None)
        for key in failed:  # once per key and execution, however many actions failed
            _, delay = self.entries.get(key, (0.0, FIRST_DELAY / 2))
            delay = min(delay * 2, MAX_DELAY)
            self.entries[key] = (now + delay, delay)

    def next_in(self, now: float) -> float | None:
        """Seconds until the earliest backoff ends (None: nothing is backing off)."""
        return min((until - now for until, _ in self.entries.values() if until > now), default=None)

    def forget_pods(self, alive: set[str]) -> None:
        """Drop entries of pods that are gone (bounded memory under pod churn)."""
        self.entries = {k: v for k, v in self.entries.items() if k.pod.name in alive}
