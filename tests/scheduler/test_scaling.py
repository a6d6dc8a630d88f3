"""The demand model (scaling.py): the rate estimator, the replica planner, the demand signal.

Estimator: exact for a constant rate whatever the report windows and however many reporters
split it, decays with its time constant, forgets what decayed away, holds a bounded number of
entries. Planner (hypothesis): never above maxReplicas, never below minReplicas, at most
`max_changes` demand-driven changes per resource and call, up at once, down only after a whole
delay of lower recommendations, a steady demand gives a steady answer.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_controller.scheduler import AdapterKey
from lora_controller.scheduler.scaling import (
    DemandSignal,
    RateEstimator,
    ReplicaPlanner,
    Scaling,
    quantize_rps,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------
# RateEstimator


@given(st.lists(st.floats(0.2, 30.0), min_size=1, max_size=40), st.floats(0.1, 50.0))
def test_a_constant_rate_is_estimated_exactly_whatever_the_windows(
    windows: list[float], rate: float
) -> None:
    est = RateEstimator(tau=60.0)
    now = 1000.0
    for window in windows:
        now += window
        est.observe("a", rate * window, window, now)
    assert est.rate("a", now) == pytest.approx(rate, rel=1e-9)


@given(st.integers(1, 5), st.lists(st.floats(0.5, 10.0), min_size=1, max_size=20))
def test_several_reporters_add_up(reporters: int, windows: list[float]) -> None:
    # Every reporter sees its share of 12 req/s, each with its own windows (all covering time).
    one, many = RateEstimator(), RateEstimator()
    now = 0.0
    for window in windows:
        now += window
        one.observe("a", 12.0 * window, window, now)
        for r in range(reporters):
            share = (r + 1) / (reporters * (reporters + 1) / 2)
            many.observe("a", 12.0 * share * window, window, now)
    assert many.rate("a", now) == pytest.approx(one.rate("a", now), rel=1e-9)
    assert one.rate("a", now) == pytest.approx(12.0, rel=1e-9)


def test_a_late_report_counts_as_if_it_came_in_time() -> None:
    in_order, late = RateEstimator(), RateEstimator()
    in_order.observe("a", 30, 10, 10.0)
    in_order.observe("a", 50, 10, 20.0)
    late.observe("a", 50, 10, 20.0)
    late.observe("a", 30, 10, 10.0)  # the first window's report arrives after the second's
    assert late.rate("a", 25.0) == pytest.approx(in_order.rate("a", 25.0), rel=1e-9)


def test_the_rate_decays_with_the_time_constant_and_is_forgotten_below_the_floor() -> None:
    est = RateEstimator(tau=30.0, floor_rps=0.01)
    for t in range(0, 600, 10):
        est.observe("a", 20, 10, float(t + 10))
    steady = est.rate("a", 600.0)
    assert steady == pytest.approx(2.0, rel=1e-9)
    assert est.rate("a", 630.0) == pytest.approx(2.0 * math.exp(-1), rel=1e-6)
    assert est.rates(630.0) == {"a": pytest.approx(2.0 * math.exp(-1))}
    assert est.rates(630.0 + 30.0 * math.log(2.0 / 0.009)) == {}
    assert len(est) == 0 and est.rate("a", 700.0) == 0.0


def test_memory_is_bounded_and_the_smallest_rates_go_first() -> None:
    est = RateEstimator(max_entries=3)
    for i, count in enumerate([5, 50, 1, 20, 2]):
        est.observe(f"k{i}", count, 10.0, 10.0)
    assert len(est) == 3
    assert set(est.rates(10.0)) == {"k1", "k3", "k0"}
    est.forget("k1")
    assert set(est.rates(10.0)) == {"k3", "k0"}


def test_a_new_key_is_not_underestimated_while_young() -> None:
    est = RateEstimator(tau=60.0)
    est.observe("a", 30, 3.0, 3.0)  # 10 req/s for 3 s, seen for the first time
    assert est.rate("a", 3.0) == pytest.approx(10.0, rel=1e-9)


def test_bad_reports_are_refused() -> None:
    est = RateEstimator()
    with pytest.raises(ValueError):
        est.observe("a", -1, 10, 0.0)
    with pytest.raises(ValueError):
        est.observe("a", 1, -10, 0.0)
    with pytest.raises(ValueError):
        RateEstimator(tau=0)


# ------------------------------------------------------------------------------------------------
# Scaling and ReplicaPlanner


def test_scaling_is_validated() -> None:
    for bad in ({"min_replicas": 3, "max_replicas": 2}, {"min_replicas": -1},
                {"max_replicas": 0, "min_replicas": 0}, {"target_rps": 0.0},
                {"max_changes": 0}):
        with pytest.raises(ValueError):
            Scaling(**bad)  # type: ignore[arg-type]
    assert Scaling(min_replicas=0, max_replicas=1).recommend(0.0, 1, 0.01) == 0


KEYS = [AdapterKey("ns", cr, name) for cr in ("c1", "c2") for name in ("a", "b", "c")]
scalings = st.builds(
    Scaling, min_replicas=st.integers(0, 2), max_replicas=st.integers(2, 6),
    target_rps=st.sampled_from([1.0, 5.0]), max_changes=st.integers(1, 4))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["c1", "c2"]), scalings, min_size=2, max_size=2),
       st.lists(st.lists(st.floats(0.0, 40.0), min_size=len(KEYS), max_size=len(KEYS)),
                min_size=1, max_size=30),
       st.lists(st.integers(0, 8), min_size=len(KEYS), max_size=len(KEYS)))
def test_the_planner_keeps_min_max_and_the_churn_bound(
    per_cr: dict[str, Scaling], steps: list[list[float]], start: list[int]
) -> None:
    scaling = {k: per_cr[k.cr] for k in KEYS}
    planner = ReplicaPlanner(scale_down_delay=30.0)
    current = dict(zip(KEYS, start, strict=True))
    for t, rates in enumerate(steps):
        out = planner.plan(dict(zip(KEYS, rates, strict=True)), scaling, current, now=10.0 * t)
        assert set(out) == set(KEYS)
        for cr in ("c1", "c2"):
            changes = 0
            for k in KEYS:
                if k.cr != cr:
                    continue
                sc = scaling[k]
                assert sc.min_replicas <= out[k] <= sc.max_replicas
                floor = max(sc.min_replicas, min(sc.max_replicas, current[k]))
                changes += abs(out[k] - floor)
            assert changes <= per_cr[cr].max_changes
        current = out


@SETTINGS
@given(scalings, st.floats(0.0, 40.0), st.integers(0, 6))
def test_a_steady_demand_gives_a_steady_answer(sc: Scaling, rate: float, start: int) -> None:
    planner = ReplicaPlanner(scale_down_delay=30.0)
    key = KEYS[0]
    current = start
    answers = []
    for t in range(30):
        current = planner.plan({key: rate}, {key: sc}, {key: current}, now=5.0 * t)[key]
        answers.append(current)
    assert len(set(answers[-10:])) == 1, answers
    wanted = max(sc.min_replicas, min(sc.max_replicas, math.ceil(rate / sc.target_rps - 1e-9)))
    if rate < 1 / 30.0:
        wanted = sc.min_replicas
    assert abs(answers[-1] - wanted) <= 1  # within the tolerance band of the current count


def test_up_at_once_down_only_after_the_delay() -> None:
    key = KEYS[0]
    sc = Scaling(min_replicas=1, max_replicas=8, target_rps=5.0, max_changes=8)
    planner = ReplicaPlanner(scale_down_delay=60.0)
    assert planner.plan({key: 4.0}, {key: sc}, {key: 1}, now=0.0)[key] == 1
    assert planner.plan({key: 31.0}, {key: sc}, {key: 1}, now=3.0)[key] == 7  # at once
    # Demand falls back: the count stays while a higher one was recommended within the delay.
    for t in range(6, 63, 3):
        assert planner.plan({key: 4.0}, {key: sc}, {key: 7}, now=float(t))[key] == 7
    assert planner.plan({key: 4.0}, {key: sc}, {key: 7}, now=66.0)[key] == 1


def test_the_change_budget_goes_to_the_hottest_first() -> None:
    a, b = AdapterKey("ns", "cr", "a"), AdapterKey("ns", "cr", "b")
    sc = Scaling(min_replicas=1, max_replicas=8, target_rps=1.0, max_changes=3)
    out = ReplicaPlanner().plan({a: 4.0, b: 8.0}, {a: sc, b: sc}, {a: 1, b: 1}, now=0.0)
    assert out == {a: 1, b: 4}


def test_scale_to_zero_after_a_whole_delay_without_requests() -> None:
    key = KEYS[0]
    sc = Scaling(min_replicas=0, max_replicas=2, target_rps=5.0)
    planner = ReplicaPlanner(scale_down_delay=60.0)
    assert planner.plan({key: 1.0}, {key: sc}, {key: 0}, now=0.0)[key] == 1
    assert planner.plan({}, {key: sc}, {key: 1}, now=30.0)[key] == 1
    assert planner.plan({}, {key: sc}, {key: 1}, now=61.0)[key] == 1  # 1 recommended at 0 s
    assert planner.plan({}, {key: sc}, {key: 1}, now=91.0)[key] == 0


def test_demand_signal_passes_a_rate_on_only_when_it_moved_by_the_factor() -> None:
    signal = DemandSignal(factor=2.0, floor_rps=0.1)
    assert signal.update({"a": 1.0, "b": 0.05}) == {"a": quantize_rps(1.0), "b": 0.0}
    assert signal.update({"a": 1.9, "b": 0.09}) == {"a": quantize_rps(1.0), "b": 0.0}
    assert signal.update({"a": 2.1, "b": 0.2})["a"] == quantize_rps(2.1)
    assert signal.update({"a": 0.01}) == {"a": 0.0}
    assert quantize_rps(0.0) == 0.0 and quantize_rps(3.0) == pytest.approx(3.0, rel=0.1)
