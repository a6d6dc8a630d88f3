"""How close the greedy scheduler comes to the exact optimum, on many small random clusters.

The optimum comes from an integer program solved by scipy's `milp` (lora_controller.scheduler.
optimum). The value is the priority-weighted number of placed replicas, weighted so that priority
is lexicographic, as the scheduler's rules are. The mean ratio is printed (pytest -s shows it).
"""

from __future__ import annotations

import random
import statistics

import pytest

from lora_controller.scheduler import Strategy, schedule
from lora_controller.scheduler.optimum import (
    optimal_value,
    optimality_ratio,
    placed_value,
    priority_weights,
    small_instance,
)
from tests.scheduler.cluster import GI, MI, adapter, check, pod


def test_the_integer_program_is_exact_on_a_known_case() -> None:
    # 1Gi pod, adapters of 600, 500 and 400Mi at one priority: the best is 600+400 (two replicas).
    pods = [pod("p0", memory=1 * GI)]
    adapters = [adapter("a", memory=600 * MI), adapter("b", memory=500 * MI),
                adapter("c", memory=400 * MI)]
    weights = priority_weights(adapters, pods)
    assert optimal_value(adapters, pods, weights) == pytest.approx(2.0)
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert placed_value(result.placement, weights) == pytest.approx(2.0)


def test_weights_make_priority_lexicographic() -> None:
    pods = [pod("p0", slots=3)]
    adapters = [adapter("hi", priority=10), adapter("lo1"), adapter("lo2"), adapter("lo3")]
    weights = priority_weights(adapters, pods)
    assert weights[adapter("hi").key] > sum(weights[adapter(n).key] for n in ("lo1", "lo2", "lo3"))


def test_the_integer_program_honours_selectors() -> None:
    # Two pods, but the adapter may use one: one replica at most.
    pods = [pod("p0"), pod("p1")]
    adapters = [adapter("a", replicas=None, eligible=["p1"])]
    weights = priority_weights(adapters, pods)
    assert optimal_value(adapters, pods, weights) == pytest.approx(1.0)


@pytest.mark.parametrize(("strategy", "selectors"), [
    (Strategy.SPREAD, False), (Strategy.PACK, False), (Strategy.SPREAD, True),
])
def test_mean_optimality_ratio(
    strategy: Strategy, selectors: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(20240601)
    ratios = []
    for _ in range(150):
        adapters, pods = small_instance(rng, selectors=selectors)
        result = schedule(adapters, pods, strategy=strategy)
        check(adapters, pods, result)
        ratio = optimality_ratio(adapters, pods, result.placement)
        assert ratio <= 1 + 1e-9, "the greedy answer cannot beat the exact optimum"
        ratios.append(ratio)
    mean = statistics.fmean(ratios)
    with capsys.disabled():
        print(f"\n{strategy}{' with selectors' if selectors else ''}: mean optimality ratio "
              f"{mean:.4f} over {len(ratios)} instances, "
              f"min {min(ratios):.3f}")
    assert mean >= 0.98
