"""One test per scheduling rule, on clusters small enough to reason about by hand."""

from __future__ import annotations

import pytest

from lora_controller.api.types import PreemptionPolicy as ApiPolicy
from lora_controller.api.types import SchedulingConfig
from lora_controller.scheduler import (
    AdapterDemand,
    PodCapacity,
    PodKey,
    PreemptionPolicy,
    Scheduler,
    Strategy,
    schedule,
    schedule_adapter,
)
from tests.scheduler.cluster import GI, MI, adapter, check, key, pod

NONE = PreemptionPolicy.NONE


# -- capacity -------------------------------------------------------------------------------------


def test_never_exceeds_memory_and_says_how_much_is_missing() -> None:
    pods = [pod("p0", memory=1 * GI)]
    adapters = [adapter("a", memory=600 * MI), adapter("b", memory=600 * MI)]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert result.placement[key("a")] == ("p0",)  # larger-or-equal first, then by key
    assert result.placement[key("b")] == ()
    reason = result.unplaced[key("b")].reasons[0]
    assert "needs 600Mi" in reason
    assert "largest free memory on an eligible pod with a free adapter slot is 424Mi" in reason


def test_never_exceeds_slots() -> None:
    pods = [pod("p0", slots=2, memory=None)]
    adapters = [adapter(n) for n in "abc"]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert sum(len(v) for v in result.placement.values()) == 2
    (short,) = result.unplaced.values()
    assert "every adapter slot is in use" in short.reasons[0]
    assert "--max-cpu-loras" in short.reasons[0]


def test_capacity_smaller_than_the_adapter_is_named() -> None:
    pods = [pod("p0", memory=1 * GI), pod("p1", memory=1536 * MI)]
    adapters = [adapter("big", memory=2 * GI)]
    result = schedule(adapters, pods)
    assert result.unplaced[key("big")].reasons == (
        "needs 2Gi, more than the adapter memory capacity of any eligible pod (largest 1536Mi)",
    )


def test_reserved_room_of_foreign_adapters_is_respected() -> None:
    pods = [pod("p0", slots=3, memory=1 * GI, reserved_slots=2, reserved_memory=512 * MI)]
    adapters = [adapter("a", memory=256 * MI), adapter("b", memory=16 * MI)]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert result.placement[key("a")] == ("p0",)
    assert result.placement[key("b")] == ()


def test_unknown_memory_capacity_is_limited_by_slots_only() -> None:
    pods = [pod("p0", slots=2, memory=None)]
    adapters = [adapter("a", memory=500 * GI), adapter("b", memory=900 * GI)]
    result = schedule(adapters, pods)
    assert result.placement[key("a")] == ("p0",) and result.placement[key("b")] == ("p0",)


def test_unknown_adapter_memory_still_takes_a_slot() -> None:
    pods = [pod("p0", slots=1)]
    adapters = [adapter("a", memory=0), adapter("b", memory=0)]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert len(result.unplaced) == 1


# -- compatibility ----------------------------------------------------------------------------------


def test_never_on_a_pod_of_another_base_model() -> None:
    pods = [pod("p0", base_model="mistral")]
    adapters = [adapter("a", base_model="llama")]
    result = schedule(adapters, pods)
    assert result.placement[key("a")] == ()
    assert result.unplaced[key("a")].reasons == ("no pod serves base model llama",)


def test_never_on_a_pod_with_a_lower_max_rank() -> None:
    pods = [pod("p0", rank=16), pod("p1", rank=8)]
    adapters = [adapter("a", rank=64)]
    result = schedule(adapters, pods)
    assert result.placement[key("a")] == ()
    reason = result.unplaced[key("a")].reasons[0]
    assert reason == "rank 64 exceeds the max-lora-rank of every Ready pod serving llama (largest 16)"


def test_low_rank_adapters_leave_high_rank_pods_for_high_rank_ones() -> None:
    pods = [pod("p16", rank=16, slots=1), pod("p64", rank=64, slots=1)]
    adapters = [adapter("small", rank=8, memory=10 * MI), adapter("large", rank=64, memory=5 * MI)]
    result = schedule(adapters, pods)
    assert result.placement[key("small")] == ("p16",)
    assert result.placement[key("large")] == ("p64",)


def test_not_ready_pods_receive_nothing_new_but_keep_what_they_have() -> None:
    pods = [pod("p0", ready=False), pod("p1", ready=False)]
    adapters = [adapter("kept"), adapter("new")]
    current = {key("kept"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.placement[key("kept")] == ("p0",)
    assert result.placement[key("new")] == ()
    assert "is Ready" in result.unplaced[key("new")].reasons[0]


# -- replicas and spreading ---------------------------------------------------------------------------


def test_never_two_replicas_on_one_pod() -> None:
    pods = [pod("p0"), pod("p1")]
    adapters = [adapter("a", replicas=3)]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert result.placement[key("a")] == ("p0", "p1")
    shortfall = result.unplaced[key("a")]
    assert (shortfall.wanted, shortfall.placed, shortfall.missing) == (3, 2, 1)
    assert "one replica per pod" in shortfall.reasons[0]


def test_spreads_over_nodes() -> None:
    # p0 and p1 share a node and have the most room; the second replica still goes elsewhere.
    pods = [pod("p0", node="n0", memory=8 * GI), pod("p1", node="n0", memory=8 * GI),
            pod("p2", node="n1", memory=1 * GI)]
    adapters = [adapter("a", replicas=2)]
    result = schedule(adapters, pods)
    assert result.placement[key("a")] in (("p0", "p2"), ("p1", "p2"))


def test_spreads_over_zones_before_nodes() -> None:
    pods = [
        pod("p0", node="n0", zone="z0", memory=8 * GI),
        pod("p1", node="n1", zone="z0", memory=8 * GI),
        pod("p2", node="n2", zone="z1", memory=1 * GI),
    ]
    adapters = [adapter("a", replicas=2)]
    result = schedule(adapters, pods)
    zones = {"p0": "z0", "p1": "z0", "p2": "z1"}
    assert {zones[p] for p in result.placement[key("a")]} == {"z0", "z1"}


def test_shares_a_node_when_nothing_else_is_left() -> None:
    pods = [pod("p0", node="n0"), pod("p1", node="n0")]
    adapters = [adapter("a", replicas=2)]
    assert schedule(adapters, pods).placement[key("a")] == ("p0", "p1")


def test_every_pod_adapter_goes_on_every_eligible_pod_with_room() -> None:
    pods = [pod("p0"), pod("p1", rank=8), pod("p2", slots=0), pod("p3", ready=False), pod("p4")]
    adapters = [adapter("everywhere", replicas=None, rank=16)]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert result.placement[key("everywhere")] == ("p0", "p4")
    assert key("everywhere") not in result.unplaced


def test_every_pod_adapter_on_no_pod_is_unplaced() -> None:
    pods = [pod("p0", memory=100 * MI)]
    adapters = [adapter("everywhere", replicas=None, memory=200 * MI)]
    shortfall = schedule(adapters, pods).unplaced[key("everywhere")]
    assert shortfall.wanted is None and shortfall.missing == 1


def test_first_replicas_before_second_replicas() -> None:
    # Room for two replicas in all: both adapters get one, rather than one adapter getting two.
    pods = [pod("p0", slots=1), pod("p1", slots=1)]
    adapters = [adapter("a", replicas=2, memory=200 * MI), adapter("b", replicas=2, memory=100 * MI)]
    result = schedule(adapters, pods)
    assert len(result.placement[key("a")]) == 1 and len(result.placement[key("b")]) == 1


# -- priority and preemption -------------------------------------------------------------------------


def test_higher_priority_first_whatever_the_order() -> None:
    pods = [pod("p0", slots=1)]
    adapters = [adapter("a-low", priority=0, memory=500 * MI), adapter("z-high", priority=10)]
    result = schedule(adapters, pods)
    assert result.placement[key("z-high")] == ("p0",)
    assert schedule(list(reversed(adapters)), pods) == result


def test_lower_priority_is_preempted() -> None:
    pods = [pod("p0", slots=1)]
    adapters = [adapter("low", priority=0), adapter("high", priority=100, cr="vip")]
    current = {key("low"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.placement[key("high", cr="vip")] == ("p0",)
    (event,) = result.preemptions
    assert (event.victim, event.pod, event.by) == (key("low"), "p0", key("high", cr="vip"))
    reason = result.unplaced[key("low")].reasons[0]
    assert reason.startswith("preempted on pod p0 by ns/vip/high (priority 100); ")
    status = result.get_adapter_status(key("low"))
    assert status.preempted == (event,) and not status.fully_placed


def test_policy_none_never_evicts() -> None:
    pods = [pod("p0", slots=1)]
    adapters = [adapter("low", priority=0), adapter("high", priority=100, policy=NONE)]
    current = {key("low"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.placement[key("low")] == ("p0",)
    assert result.preemptions == ()
    assert "preemptionPolicy None" in result.unplaced[key("high")].reasons[0]


@pytest.mark.parametrize(("wire", "evicts"), [("LowerPriority", True), ("None", False)])
def test_policy_parsed_from_a_resource_is_honoured_as_is(wire: str, evicts: bool) -> None:
    # One vocabulary: the CR's parsed policy goes to the scheduler without a translation.
    policy = SchedulingConfig.model_validate({"preemptionPolicy": wire}).preemption_policy
    assert PreemptionPolicy is ApiPolicy and policy is PreemptionPolicy(wire)
    pods = [pod("p0", slots=1)]
    adapters = [adapter("low", priority=0), adapter("high", priority=100, policy=policy)]
    current = {key("low"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.placement[key("high")] == (("p0",) if evicts else ())
    assert len(result.preemptions) == (1 if evicts else 0)


def test_equal_priority_is_never_evicted() -> None:
    pods = [pod("p0", slots=1)]
    adapters = [adapter("old", priority=5), adapter("new", priority=5, memory=GI)]
    current = {key("old"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    assert result.placement[key("old")] == ("p0",) and result.preemptions == ()


def test_evicts_the_fewest() -> None:
    pods = [pod("p0", memory=600 * MI), pod("p1", memory=600 * MI)]
    adapters = [
        adapter("small-1", memory=300 * MI), adapter("small-2", memory=300 * MI),
        adapter("big", memory=600 * MI), adapter("vip", memory=500 * MI, priority=10),
    ]
    current = {key("small-1"): (PodKey("p0"),), key("small-2"): (PodKey("p0"),),
               key("big"): (PodKey("p1"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert [(e.victim.name, e.pod) for e in result.preemptions] == [("big", "p1")]


def test_evicts_the_lowest_priority() -> None:
    pods = [pod("p0", slots=1), pod("p1", slots=1)]
    adapters = [adapter("five", priority=5), adapter("one", priority=1),
                adapter("vip", priority=10)]
    current = {key("five"): (PodKey("p0"),), key("one"): (PodKey("p1"),)}
    result = schedule(adapters, pods, current)
    assert [(e.victim.name, e.pod) for e in result.preemptions] == [("one", "p1")]


def test_nothing_is_evicted_for_something_that_still_would_not_fit() -> None:
    # Evicting "low" would free 300Mi next to 124Mi free: not the 500Mi "vip" needs.
    pods = [pod("p0", memory=1 * GI)]
    adapters = [adapter("keeper", memory=600 * MI, priority=20), adapter("low", memory=300 * MI),
                adapter("vip", memory=500 * MI, priority=10)]
    current = {key("low"): (PodKey("p0"),), key("keeper"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    assert result.preemptions == ()
    assert result.placement[key("low")] == ("p0",)
    assert "would not make room" in result.unplaced[key("vip")].reasons[0]


def test_preempted_adapter_moves_when_there_is_room_elsewhere() -> None:
    pods = [pod("p0", rank=64, slots=1), pod("p1", rank=16, slots=1)]
    adapters = [adapter("low", rank=8), adapter("vip", rank=64, priority=10)]
    current = {key("low"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.placement[key("vip")] == ("p0",)
    assert result.placement[key("low")] == ("p1",)
    assert result.unplaced == {}


# -- stability ------------------------------------------------------------------------------------------


def test_valid_placement_stays_even_if_another_pod_is_roomier() -> None:
    pods = [pod("p0", memory=8 * GI), pod("p1", memory=1 * GI)]
    adapters = [adapter("a")]
    assert schedule(adapters, pods).placement[key("a")] == ("p0",)
    current = {key("a"): (PodKey("p1"),)}
    assert schedule(adapters, pods, current).placement[key("a")] == ("p1",)


def test_invalid_placements_are_dropped() -> None:
    pods = [pod("p0", rank=8), pod("p1", base_model="other"), pod("p2")]
    adapters = [adapter("a", rank=16)]
    current = {key("a"): (PodKey("p0"), PodKey("p1"), PodKey("gone"))}
    result = schedule(adapters, pods, current)
    assert result.placement[key("a")] == ("p2",)


def test_overfull_pod_keeps_its_highest_priorities() -> None:
    # Capacity shrank (or an estimate grew): the pod keeps what fits, highest priority first.
    pods = [pod("p0", slots=2)]
    adapters = [adapter("a", priority=1), adapter("b", priority=3), adapter("c", priority=2)]
    current = {k: (PodKey("p0"),) for k in (key("a"), key("b"), key("c"))}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.get_pod_adapters(PodKey("p0")) == (key("b"), key("c"))


def test_fewer_replicas_keeps_a_spread_subset() -> None:
    pods = [pod("p0", node="n0", zone="z0"), pod("p1", node="n1", zone="z0"),
            pod("p2", node="n2", zone="z1")]
    adapters = [adapter("a", replicas=2)]
    current = {key("a"): (PodKey("p0"), PodKey("p1"), PodKey("p2"))}
    assert schedule(adapters, pods, current).placement[key("a")] == ("p0", "p2")


def test_rerun_on_own_output_changes_nothing() -> None:
    pods = [pod(f"p{i}", slots=3, memory=GI, node=f"n{i % 2}") for i in range(3)]
    adapters = [adapter(f"a{i}", memory=(i + 1) * 90 * MI, priority=i % 3, replicas=1 + i % 2)
                for i in range(8)]
    first = schedule(adapters, pods)
    second = schedule(adapters, pods, first.placement)
    assert second.placement == first.placement
    assert second.unplaced == first.unplaced
    assert second.preemptions == ()


# -- the engine ------------------------------------------------------------------------------------------


def test_incremental_run_after_losing_a_pod_matches_a_full_run() -> None:
    pods = [pod(f"p{i}", slots=4, memory=GI, zone=f"z{i % 2}") for i in range(6)]
    adapters = [adapter(f"a{i}", memory=(i % 5 + 1) * 60 * MI, priority=i % 3, replicas=1 + i % 3)
                for i in range(20)]
    engine = Scheduler()
    first = engine.schedule(adapters, pods)
    lost = PodKey("p2")
    remaining = [p for p in pods if p.key != lost]
    observed = {k: tuple(p for p in v if p != lost) for k, v in first.placement.items()}
    again = engine.schedule(adapters, remaining, observed)
    assert engine.incremental
    assert again == schedule(adapters, remaining, observed)
    # The observed placement may still list the lost pod: same answer, still incremental.
    engine = Scheduler()
    engine.schedule(adapters, pods)
    assert engine.schedule(adapters, remaining, first.placement) == again
    assert engine.incremental


def test_a_run_leaves_nothing_of_its_own_to_the_next() -> None:
    # Each schedule() call is a run of its own: the preemption of the first run is in its answer,
    # and the next (incremental) run on that answer neither repeats it nor gives it as a reason.
    pods = [pod("p0", slots=1)]
    adapters = [adapter("low", priority=0), adapter("high", priority=100, cr="vip")]
    engine = Scheduler()
    first = engine.schedule(adapters, pods, {key("low"): (PodKey("p0"),)})
    assert len(first.preemptions) == 1
    assert first.unplaced[key("low")].reasons[0].startswith("preempted on pod p0")
    again = engine.schedule(adapters, pods, first.placement)
    assert engine.incremental
    assert again == schedule(adapters, pods, first.placement)
    assert again.preemptions == () and again.moves == ()
    assert not again.unplaced[key("low")].reasons[0].startswith("preempted")


def test_changed_input_falls_back_to_a_full_run() -> None:
    pods = [pod("p0"), pod("p1")]
    engine = Scheduler()
    first = engine.schedule([adapter("a")], pods)
    again = engine.schedule([adapter("a", memory=200 * MI)], pods, first.placement)
    assert not engine.incremental
    assert again == schedule([adapter("a", memory=200 * MI)], pods, first.placement)


@pytest.mark.parametrize("strategy", list(Strategy))
def test_strategies_choose_differently(strategy: Strategy) -> None:
    pods = [pod("roomy", memory=4 * GI), pod("tight", memory=200 * MI)]
    result = schedule([adapter("a", memory=150 * MI)], pods, strategy=strategy)
    expected = "roomy" if strategy is Strategy.SPREAD else "tight"
    assert result.placement[key("a")] == (expected,)


# -- the proposal's API and input checks -------------------------------------------------------------


def test_proposal_api() -> None:
    pods = [pod("p0"), pod("p1")]
    status = schedule_adapter(adapter("a", replicas=2), pods)
    assert status.pods == ("p0", "p1") and status.fully_placed
    result = schedule([adapter("a"), adapter("b")], [pod("p0", slots=1), pod("p1", slots=1)])
    assert result.get_pod_adapters(PodKey("p0")) + result.get_pod_adapters(PodKey("p1")) in (
        (key("a"), key("b")), (key("b"), key("a")))
    assert result.get_pod_adapters(PodKey("nope")) == ()
    with pytest.raises(KeyError):
        result.get_adapter_status(key("unknown"))


def test_duplicates_are_rejected() -> None:
    with pytest.raises(ValueError, match="given twice"):
        schedule([adapter("a"), adapter("a")], [pod("p0")])
    with pytest.raises(ValueError, match="given twice"):
        schedule([adapter("a")], [pod("p0"), pod("p0")])


def test_message_summarises_reasons() -> None:
    result = schedule([adapter("a", replicas=3)], [pod("p0")])
    message = result.unplaced[key("a")].message
    assert message.startswith("placed 1 of 3: 2 replicas: one replica per pod")


# -- podSelector (eligible pods) -----------------------------------------------------------------------


def test_only_on_pods_the_selector_matches() -> None:
    # p0 has the most room, but the selector allows only p1 and p2.
    pods = [pod("p0", memory=8 * GI), pod("p1"), pod("p2")]
    adapters = [adapter("a", replicas=3, eligible=["p1", "p2"])]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert result.placement[key("a")] == ("p1", "p2")
    reason = result.unplaced[key("a")].reasons[0]
    assert reason.startswith("one replica per pod, and all 2 eligible pods")
    assert "matching its podSelector" in reason


def test_no_pod_matches_the_selector() -> None:
    # The selected pods exist but serve another model, or do not exist at all.
    pods = [pod("p0"), pod("m0", base_model="mistral")]
    adapters = [adapter("a", eligible=["m0", "gone"]), adapter("b", eligible=[])]
    result = schedule(adapters, pods)
    for name in ("a", "b"):
        assert result.placement[key(name)] == ()
        assert result.unplaced[key(name)].reasons == ("no pod matches this adapter's podSelector",)
    # No pod of the base model at all still says so first.
    alone = schedule([adapter("c", base_model="qwen", eligible=["p0"])], pods)
    assert alone.unplaced[key("c")].reasons == ("no pod serves base model qwen",)


def test_every_pod_adapter_takes_every_selected_pod() -> None:
    pods = [pod("p0"), pod("p1"), pod("p2"), pod("p3", ready=False)]
    adapters = [adapter("everywhere", replicas=None, eligible=["p0", "p2", "p3"])]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert result.placement[key("everywhere")] == ("p0", "p2")


def test_selector_reasons_count_only_selected_pods() -> None:
    # p0 (not selected) is empty; the selected p1 has 100Mi free, p2 no free slot.
    pods = [pod("p0", memory=8 * GI), pod("p1", memory=300 * MI), pod("p2", slots=1)]
    adapters = [adapter("filler", memory=200 * MI, eligible=["p1"], priority=5),
                adapter("filler2", memory=10 * MI, eligible=["p2"], priority=5),
                adapter("a", memory=150 * MI, eligible=["p1", "p2"])]
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    reason = result.unplaced[key("a")].reasons[0]
    assert "largest free memory on an eligible pod with a free adapter slot is 100Mi" in reason
    assert "(1 more eligible pods have no free slot)" in reason
    # Not Ready, or too low a rank, among the selected pods only.
    pods = [pod("p0"), pod("p1", ready=False), pod("p2", rank=8)]
    result = schedule([adapter("r", eligible=["p1"]), adapter("k", rank=16, eligible=["p2"])], pods)
    assert result.unplaced[key("r")].reasons == (
        "none of the 1 pods serving base model llama and matching its podSelector is Ready",)
    assert result.unplaced[key("k")].reasons == (
        "rank 16 exceeds the max-lora-rank of every Ready pod serving llama that matches its "
        "podSelector (largest 8)",)


def test_preemption_only_on_selected_pods_and_victims_keep_their_selector() -> None:
    # vip may only use p1: it evicts low there, although p0 holds an even lower adapter.
    # low may only use p1 too, so it does not move to p2, which has room.
    pods = [pod("p0", slots=1), pod("p1", slots=1), pod("p2", slots=1)]
    adapters = [adapter("lowest", priority=0, eligible=["p0"]),
                adapter("low", priority=1, eligible=["p1"]),
                adapter("vip", priority=10, eligible=["p1"])]
    current = {key("lowest"): (PodKey("p0"),), key("low"): (PodKey("p1"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert [(e.victim.name, e.pod) for e in result.preemptions] == [("low", "p1")]
    assert result.placement[key("lowest")] == ("p0",)
    assert result.placement[key("low")] == ()
    reason = result.unplaced[key("low")].reasons[0]
    assert reason.startswith("preempted on pod p1 by ns/cr/vip (priority 10); ")
    assert "every adapter slot is in use on the 1 eligible pods" in reason


def test_placement_on_a_pod_no_longer_selected_moves() -> None:
    pods = [pod("p0"), pod("p1")]
    adapters = [adapter("a", eligible=["p1"])]
    current = {key("a"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.placement[key("a")] == ("p1",)


def test_selector_with_many_pods_uses_the_index_and_agrees_with_a_scan() -> None:
    # More selected pods than the direct-scan threshold, interleaved with unselected roomier ones.
    pods = [pod(f"p{i:02d}", memory=(8 if i % 2 else 1) * GI, slots=3) for i in range(60)]
    selected = [f"p{i:02d}" for i in range(0, 60, 2)]
    adapters = [adapter(f"a{j}", memory=(j % 7 + 1) * 50 * MI, replicas=1 + j % 3, eligible=selected)
                for j in range(40)]
    for strategy in Strategy:
        result = schedule(adapters, pods, strategy=strategy)
        check(adapters, pods, result)
        assert all(p in selected for placed in result.placement.values() for p in placed)
        # The same answer when the selector is given pod by pod (no shared set object).
        split = [adapter(a.key.name, memory=a.memory_bytes, replicas=a.replicas, eligible=list(selected))
                 for a in adapters]
        assert schedule(split, pods, strategy=strategy) == result


def test_incremental_path_follows_selector_sets_rebuilt_for_lost_and_added_pods() -> None:
    # The reconciler rebuilds each CR's set when pods change; that must not force a full run.
    pods = [pod(f"p{i}", slots=3, memory=GI) for i in range(6)]
    group_a = frozenset(PodKey(f"p{i}") for i in range(4))
    adapters = [adapter(f"a{j}", memory=(j % 4 + 1) * 80 * MI, replicas=2) for j in range(10)]
    adapters = [type(a)(**{**{n: getattr(a, n) for n in a.__dataclass_fields__},
                           "eligible_pods": group_a if j % 2 else None})
                for j, a in enumerate(adapters)]
    engine = Scheduler()
    first = engine.schedule(adapters, pods)
    remaining = [p for p in pods if p.key != "p1"] + [pod("p9", slots=3, memory=GI)]
    group_b = (group_a - {PodKey("p1")}) | {PodKey("p9")}
    rebuilt = [type(a)(**{**{n: getattr(a, n) for n in a.__dataclass_fields__},
                          "eligible_pods": group_b if a.eligible_pods is not None else None})
               for a in adapters]
    observed = {k: tuple(p for p in v if p != "p1") for k, v in first.placement.items()}
    again = engine.schedule(rebuilt, remaining, observed)
    assert engine.incremental
    assert again == schedule(rebuilt, remaining, observed)
    check(rebuilt, remaining, again, observed)
    # A set that changes for a pod that stays is a real change: a full run.
    narrowed = [type(a)(**{**{n: getattr(a, n) for n in a.__dataclass_fields__},
                           "eligible_pods": group_b - {PodKey("p0")} if a.eligible_pods else None})
                for a in rebuilt]
    third = engine.schedule(narrowed, remaining, again.placement)
    assert not engine.incremental
    assert third == schedule(narrowed, remaining, again.placement)


# -- one-move repair -----------------------------------------------------------------------------------


def _lead_case() -> tuple[list[AdapterDemand], list[PodCapacity]]:
    """3 pods of 4 slots; x and y everywhere at priority 100; a, b, c want 2 each at priority 10."""
    pods = [pod(f"p{i}", slots=4, memory=None) for i in range(3)]
    adapters = [adapter("x", priority=100, replicas=None), adapter("y", priority=100, replicas=None)]
    adapters += [adapter(n, priority=10, replicas=2) for n in "abc"]
    return adapters, pods


def test_greedy_pass_alone_would_leave_a_replica_out() -> None:
    # The round-robin pass fills the 6 free slots so that c cannot get a second pod: its two
    # options both hold a and b already. This is the state the repair starts from.
    adapters, pods = _lead_case()
    stuck = {key("x"): ("p0", "p1", "p2"), key("y"): ("p0", "p1", "p2"),
             key("a"): ("p1", "p2"), key("b"): ("p1", "p2"), key("c"): ("p0",)}
    check_free = {p.key: 4 - sum(p.key in v for v in stuck.values()) for p in pods}
    assert check_free == {"p0": 1, "p1": 0, "p2": 0}
    result = schedule(adapters, pods, stuck)
    check(adapters, pods, result, stuck)
    assert result.unplaced == {}
    (move,) = result.moves
    assert move.by == key("c") and move.to_pod == "p0"
    assert move.from_pod in result.placement[key("c")]


def test_repair_places_every_replica_by_moving_one() -> None:
    adapters, pods = _lead_case()
    result = schedule(adapters, pods)
    check(adapters, pods, result)
    assert result.unplaced == {}
    assert sum(len(v) for v in result.placement.values()) == 12
    assert all(len(result.placement[key(n)]) == 2 for n in "abc")
    assert len(result.moves) == 1 and result.preemptions == ()
    # Idempotent: a second run keeps everything and moves nothing.
    again = schedule(adapters, pods, result.placement)
    assert again.placement == result.placement and again.moves == ()
    assert Scheduler().schedule(adapters, pods) == result


def test_repair_makes_room_on_the_only_selected_pod() -> None:
    # pinned may only use p0, which the others filled first (higher priority); one of them moves.
    pods = [pod("p0", slots=2, memory=None), pod("p1", slots=2, memory=None)]
    adapters = [adapter("free-1", priority=5), adapter("free-2", priority=5),
                adapter("pinned", priority=1, eligible=["p0"], policy=NONE)]
    current = {key("free-1"): (PodKey("p0"),), key("free-2"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.placement[key("pinned")] == ("p0",)
    assert result.preemptions == ()
    (move,) = result.moves
    assert (move.adapter, move.from_pod, move.to_pod, move.by) == (
        key("free-1"), "p0", "p1", key("pinned"))
    assert result.get_adapter_status(key("free-1")).moved == (move,)


def test_repair_never_moves_a_larger_adapter_or_to_a_pod_it_may_not_use() -> None:
    # Moving "big" (600Mi) to p1 would make room for "small" (500Mi), but a move never frees
    # memory on the pod it leaves.
    pods = [pod("p0", memory=GI), pod("p1", memory=GI)]
    adapters = [adapter("big", memory=600 * MI, priority=5, eligible=["p0", "p1"]),
                adapter("blocker", memory=300 * MI, priority=5, eligible=["p1"]),
                adapter("small", memory=500 * MI, eligible=["p0"])]
    current = {key("big"): (PodKey("p0"),), key("blocker"): (PodKey("p1"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert result.moves == () and result.placement[key("small")] == ()
    # A smaller one that the other pod may take moves; one the other pod may not take stays.
    adapters = [adapter("mid", memory=400 * MI, priority=5, eligible=["p0", "p1"]),
                adapter("pinned", memory=100 * MI, priority=5, eligible=["p0"]),
                adapter("small", memory=600 * MI, eligible=["p0"])]
    current = {key("mid"): (PodKey("p0"),), key("pinned"): (PodKey("p0"),)}
    result = schedule(adapters, pods, current)
    check(adapters, pods, result, current)
    assert [(m.adapter.name, m.from_pod, m.to_pod) for m in result.moves] == [("mid", "p0", "p1")]
    assert result.placement[key("small")] == ("p0",)


def test_nothing_moves_when_nothing_is_missing() -> None:
    adapters, pods = _lead_case()
    adapters = adapters[:-1]  # without c, everything fits as placed
    result = schedule(adapters, pods)
    assert result.unplaced == {} and result.moves == ()
