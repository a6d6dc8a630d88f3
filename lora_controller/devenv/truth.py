"""What the pods really served, and when: the yardstick of router answers in failover runs.

Each simulated pod logs every load and unload it completed, with the wall-clock time its
`/v1/models` changed. `Timeline` turns those logs into the set of pods serving each adapter over
time, and `lag` says how far behind the pods an answer of the router API was: 0 when the pods it
listed were exactly the adapter's pods at the moment it was received, otherwise the time since they
last were (an upper bound: the answer was made a little before it was received), and infinity when
they never were. Pods restarted during a run are not followed (a restart forgets adapters without
an unload in the log).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass

from lora_controller.simulator.pod import SimulatedPod


@dataclass(frozen=True)
class Answer:
    """One `GetPodsForAdapter` answer, with the wall-clock times it was asked and received."""

    adapter: str
    sent: float
    received: float
    pods: frozenset[str]
    observed: tuple[float | None, ...] = ()  # each pod's observedAt (epoch seconds)


class Timeline:
    """Per adapter: the times its set of serving pods changed, and the sets."""

    def __init__(self, changes: Mapping[str, list[tuple[float, str, bool]]]) -> None:
        self._times: dict[str, list[float]] = {}
        self._sets: dict[str, list[frozenset[str]]] = {}
        for adapter, events in changes.items():
            current: set[str] = set()
            times, sets = [float("-inf")], [frozenset[str]()]
            for at, pod, present in sorted(events):
                (current.add if present else current.discard)(pod)
                times.append(at)
                sets.append(frozenset(current))
            self._times[adapter], self._sets[adapter] = times, sets

    @classmethod
    def of(cls, pods: Mapping[str, SimulatedPod]) -> Timeline:
        """From the pods' load logs (successful loads and unloads; in-place reloads change nothing)."""
        changes: dict[str, list[tuple[float, str, bool]]] = {}
        for name, sim in pods.items():
            for e in sim.load_log:
                if e.status == 200 and not (e.action == "load" and e.inplace):
                    changes.setdefault(e.name, []).append((e.finished_at, name, e.action == "load"))
        return cls(changes)

    def serving(self, adapter: str, at: float) -> frozenset[str]:
        times = self._times.get(adapter)
        if not times:
            return frozenset()
        return self._sets[adapter][bisect.bisect_right(times, at) - 1]

    def lag(self, answer: Answer) -> float:
        """Seconds the answer was behind the pods (see the module's docstring)."""
        times = self._times.get(answer.adapter)
        if not times:
            return 0.0 if not answer.pods else float("inf")
        sets = self._sets[answer.adapter]
        k = bisect.bisect_right(times, answer.received) - 1
        if sets[k] == answer.pods:
            return 0.0
        for j in range(k - 1, -1, -1):
            if sets[j] == answer.pods:
                return answer.received - times[j + 1]
        return float("inf")
