"""Demand: how much each adapter is used, from every signal there is.

- **Router reports** (`POST /v1/usage`): a router tells, per adapter of a namespace, how many
  requests it routed in its last window. These are counts, the strongest signal; several routers
  add up. Reports naming adapters that no resource of the namespace wants are ignored (a report
  cannot grow memory: only wanted adapters are kept, and at most `MAX_REPORTED` per report).
- **Router lookups** (`GET /v1/adapters/{name}/pods`): a router asks where an adapter is on a cache
  miss, so a lookup means at least one request. A weak signal, used only for adapters no router
  reported lately (otherwise they would count twice).
- **Pods** (`vllm:lora_requests_info` on `/metrics`, read by the observer where demand matters):
  which adapters ran or waited lately. No counts, but an adapter running somewhere is in use (it is
  never scaled to zero), and one waiting on a pod whose `--max-loras` slots are all taken is short
  of room: it is given one replica more than it has.

Rates are smoothed by the scheduler's `RateEstimator` (an exponentially weighted rate, see
scheduler/scaling.py for why). Nothing here is written to a resource's status: demand changes all
the time, status writes must not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import Gauge

from lora_controller.reconcile.observing import Usage
from lora_controller.scheduler.model import AdapterKey
from lora_controller.scheduler.scaling import RateEstimator

MAX_REPORTED = 1_000
"""Adapters one usage report may name."""
LOOKUP_WEIGHT = 1.0
"""Requests a lookup stands for (at least the one that missed the router's cache)."""
LOOKUP_WINDOW = 10.0
"""Seconds a lookup's request is spread over: a lookup is one request, not a burst."""

DEMAND = Gauge("lora_controller_adapter_demand_requests_per_second",
               "Smoothed request rate of an adapter (router reports, lookups, pods' reports).",
               ["namespace", "lora_adapter", "adapter"])


@dataclass(frozen=True)
class Reported:
    accepted: int  # adapters of the report that some resource wants
    ignored: int  # adapters no resource of the namespace wants


class DemandSignals:
    def __init__(self, *, tau: float = 60.0) -> None:
        self.reports = RateEstimator(tau)
        self.lookups = RateEstimator(tau)
        self._last_report: dict[AdapterKey, float] = {}
        self._exported: set[AdapterKey] = set()

    def report(self, known: Mapping[str, Iterable[AdapterKey]], counts: Mapping[str, int], *,
               window: float, now: float) -> Reported:
        """A router's counts for one namespace; `known`: the namespace's wanted adapters by name."""
        accepted = 0
        for name, count in counts.items():
            keys = list(known.get(name, ()))
            for key in keys:
                self.reports.observe(key, count / len(keys), window, now)
                self._last_report[key] = now
            accepted += bool(keys)
        return Reported(accepted, len(counts) - accepted)

    def lookup(self, key: AdapterKey, now: float) -> None:
        self.lookups.observe(key, LOOKUP_WEIGHT, LOOKUP_WINDOW, now)

    def rate(self, key: AdapterKey, now: float, *, quiet_after: float) -> float:
        """Requests per second: reported, else looked up (when no report came for `quiet_after`)."""
        reported = self.reports.rate(key, now)
        last = self._last_report.get(key)
        if last is not None and now - last < quiet_after:
            return reported
        return max(reported, self.lookups.rate(key, now))

    def rates(self, keys: Iterable[AdapterKey], *, now: float,
              quiet_after: float) -> dict[AdapterKey, float]:
        """The rate of each of `keys` (see `rate`)."""
        return {key: self.rate(key, now, quiet_after=quiet_after) for key in keys}

    def forget_except(self, namespace: str, keep: set[AdapterKey]) -> None:
        """Drop what concerned adapters of `namespace` that are no longer wanted."""
        for key in [k for k in self._last_report if k.namespace == namespace and k not in keep]:
            del self._last_report[key]
            self.reports.forget(key)
            self.lookups.forget(key)
        for key in [k for k in self._exported if k.namespace == namespace and k not in keep]:
            self._exported.discard(key)
            try:
                DEMAND.remove(key.namespace, key.cr, key.name)
            except KeyError:
                pass

    def export(self, rates: Mapping[AdapterKey, float]) -> None:
        for key, value in rates.items():
            DEMAND.labels(key.namespace, key.cr, key.name).set(round(value, 4))
            self._exported.add(key)


def in_use(usage: Iterable[Usage]) -> set[str]:
    """Adapter names a pod ran or queued lately: in use, so never scaled to zero."""
    return {name for u in usage for name in u.running | u.waiting}


def short_of_slots(usage: Iterable[Usage]) -> set[str]:
    """Adapter names waiting on a pod whose `--max-loras` slots are all taken."""
    return {name for u in usage if u.slots_full for name in u.waiting}
