"""Status computation: phases, conditions, counts, bounded size."""

from __future__ import annotations

from lora_controller.api.types import Phase
from lora_controller.reconcile.status import MAX_LIST, AdapterReport, SourceProblem, compute_status

NOW = "2026-01-01T00:00:00Z"


def status(reports: list[AdapterReport], **kw: object):  # type: ignore[no-untyped-def]
    return compute_status(reports=reports, generation=3, previous=None, now=NOW, **kw)  # type: ignore[arg-type]


def test_ready_when_every_desired_replica_is_confirmed() -> None:
    s = status([AdapterReport("a", ("p1", "p2"), 2, ("p1", "p2"))])
    assert s.phase is Phase.READY and s.loaded_count == 1 and s.observed_generation == 3
    assert [(p.pod, p.adapters) for p in s.pod_assignments] == [("p1", ["a"]), ("p2", ["a"])]
    ready = next(c for c in s.conditions if c.type == "Ready")
    assert ready.status == "True" and ready.observed_generation == 3


def test_loading_while_replicas_are_unconfirmed_without_failure() -> None:
    s = status([AdapterReport("a", ("p1", "p2"), 2, ("p1",))])
    assert s.phase is Phase.LOADING
    assert next(c for c in s.conditions if c.type == "Progressing").status == "True"


def test_partial_and_failed() -> None:
    ok = AdapterReport("a", ("p1",), 1, ("p1",))
    bad = AdapterReport("b", (), 1, (), ["needs 2Gi, largest free capacity 1Gi"])
    s = status([ok, bad])
    assert s.phase is Phase.PARTIAL and s.failed_count == 1
    assert s.failed_adapters[0].reason == "needs 2Gi, largest free capacity 1Gi"
    assert status([bad]).phase is Phase.FAILED


def test_source_problem_without_adapters_is_failed_with_its_reason() -> None:
    s = status([], source_problem=SourceProblem("CredentialsMissing", "Secret 'x' not found"))
    assert s.phase is Phase.FAILED
    ready = next(c for c in s.conditions if c.type == "Ready")
    assert ready.reason == "CredentialsMissing" and "Secret 'x'" in ready.message


def test_transition_time_is_kept_while_the_status_does_not_change() -> None:
    first = status([AdapterReport("a", ("p1",), 1, ("p1",))])
    again = compute_status(reports=[AdapterReport("a", ("p1",), 1, ("p1",))], generation=3,
                           previous=first, now="2026-01-02T00:00:00Z")
    assert again == first


def test_lists_are_bounded_and_counts_exact() -> None:
    reports = [AdapterReport(f"a{i:04d}", ("p1",), 1, ("p1",)) for i in range(MAX_LIST * 3)]
    s = status(reports)
    assert len(s.loaded_adapters) == MAX_LIST and s.loaded_count == MAX_LIST * 3
    assert all(len(p.adapters) <= MAX_LIST for p in s.pod_assignments)
    assert s.truncated


def test_lazy_adapters_are_ready_when_placed() -> None:
    s = status([AdapterReport("a", ("p1",), 1, (), lazy=True)])
    assert s.phase is Phase.READY and s.loaded_count == 0 and s.loaded_adapters == []
