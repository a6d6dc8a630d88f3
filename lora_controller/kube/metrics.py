"""Prometheus metrics of the kube layer, under the names client-go and controller-runtime use.

Dashboards and alerts written for Go controllers (`workqueue_depth{name=...}`,
`controller_runtime_reconcile_total{controller=..., result=...}`) work unchanged against this
controller because the names, labels, help texts and buckets are the upstream ones
(controller-runtime `pkg/metrics/workqueue.go` and `pkg/internal/controller/metrics`).

Every metric is a module-level object registered once in prometheus_client's default registry;
a queue or a controller only picks its label values (`name`, `controller`). Creating many queues,
as tests do, therefore never registers a time series twice. Updates stay cheap on the hot path:
label children are bound once, and gauges that describe a state (depth, work in progress, active
workers) are read from that state when scraped rather than moved on every key.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CONTROLLER_ACTIVE_WORKERS",
    "CONTROLLER_MAX_CONCURRENT_RECONCILES",
    "RECONCILE_ERRORS",
    "RECONCILE_TIME",
    "RECONCILE_TIMEOUTS",
    "RECONCILE_TOTAL",
    "TERMINAL_RECONCILE_ERRORS",
    "WORKQUEUE_ADDS",
    "WORKQUEUE_DEPTH",
    "WORKQUEUE_LONGEST_RUNNING_PROCESSOR",
    "WORKQUEUE_QUEUE_DURATION",
    "WORKQUEUE_RETRIES",
    "WORKQUEUE_UNFINISHED_WORK",
    "WORKQUEUE_WORK_DURATION",
    "QueueMetrics",
    "exponential_buckets",
]


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """Bucket bounds `start * factor**i` for `i < count`, as Prometheus' Go client makes them."""
    if start <= 0 or factor <= 1 or count < 1:
        raise ValueError("exponential buckets need start > 0, factor > 1 and count >= 1")
    return tuple(start * factor**i for i in range(count))


# prometheus.ExponentialBuckets(10e-9, 10, 12): 10 ns .. 1000 s.
_WORKQUEUE_BUCKETS = exponential_buckets(10e-9, 10, 12)

WORKQUEUE_DEPTH = Gauge(
    "workqueue_depth",
    "Current depth of workqueue",
    ["name"],
)
WORKQUEUE_ADDS = Counter(
    "workqueue_adds_total",
    "Total number of adds handled by workqueue",
    ["name"],
)
WORKQUEUE_QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    ["name"],
    buckets=_WORKQUEUE_BUCKETS,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes.",
    ["name"],
    buckets=_WORKQUEUE_BUCKETS,
)
WORKQUEUE_UNFINISHED_WORK = Gauge(
    "workqueue_unfinished_work_seconds",
    "How many seconds of work has been done that is in progress and hasn't been observed by "
    "work_duration. Large values indicate stuck threads. One can deduce the number of stuck "
    "threads by observing the rate at which this increases.",
    ["name"],
)
WORKQUEUE_LONGEST_RUNNING_PROCESSOR = Gauge(
    "workqueue_longest_running_processor_seconds",
    "How many seconds has the longest running processor for workqueue been running.",
    ["name"],
)
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries_total",
    "Total number of retries handled by workqueue",
    ["name"],
)

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
)
TERMINAL_RECONCILE_ERRORS = Counter(
    "controller_runtime_terminal_reconcile_errors_total",
    "Total number of terminal reconciliation errors per controller",
    ["controller"],
)
RECONCILE_TIMEOUTS = Counter(
    "controller_runtime_reconcile_timeouts_total",
    "Total number of reconciliation timeouts per controller",
    ["controller"],
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
    buckets=(
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.15,
        0.2,
        0.25,
        0.3,
        0.35,
        0.4,
        0.45,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
        1.0,
        1.25,
        1.5,
        1.75,
        2.0,
        2.5,
        3.0,
        3.5,
        4.0,
        4.5,
        5,
        6,
        7,
        8,
        9,
        10,
        15,
        20,
        25,
        30,
        40,
        50,
        60,
    ),
)
CONTROLLER_MAX_CONCURRENT_RECONCILES = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller",
    ["controller"],
)
CONTROLLER_ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ["controller"],
)


class QueueMetrics:
    """The workqueue metric children of one queue name, bound once so updates stay cheap."""

    __slots__ = (
        "adds",
        "depth",
        "longest_running",
        "queue_duration",
        "retries",
        "unfinished_work",
        "work_duration",
    )

    def __init__(self, name: str) -> None:
        self.depth = WORKQUEUE_DEPTH.labels(name)
        self.adds = WORKQUEUE_ADDS.labels(name)
        self.queue_duration = WORKQUEUE_QUEUE_DURATION.labels(name)
        self.work_duration = WORKQUEUE_WORK_DURATION.labels(name)
        self.unfinished_work = WORKQUEUE_UNFINISHED_WORK.labels(name)
        self.longest_running = WORKQUEUE_LONGEST_RUNNING_PROCESSOR.labels(name)
        self.retries = WORKQUEUE_RETRIES.labels(name)

    def observe_queue(
        self,
        *,
        depth: Callable[[], float],
        unfinished: Callable[[], float],
        longest: Callable[[], float],
    ) -> None:
        """Read the three gauges from the queue when scraped, costing nothing per key.

        client-go moves `depth` on every add and get and refreshes the other two on a ticker;
        reading them at scrape time gives the same values, always current. A new queue under a
        name replaces an earlier one (a controller restarted after a lost lease).
        """
        self.depth.set_function(depth)
        self.unfinished_work.set_function(unfinished)
        self.longest_running.set_function(longest)
