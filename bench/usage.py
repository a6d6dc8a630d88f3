"""Benchmark of usage-aware placement: Fixed (today's behaviour) vs Demand vs Dynamo's HRW.

Run: `python bench/usage.py` (from the repository root, in the project's virtualenv; about two
minutes on two cores). Virtual time, deterministic for a seed. Last line:
`{"scenarios": {NAME: {"fixed": FIGURES, "demand": FIGURES, "hrw": FIGURES}, ...},
"incremental_ms": X}` with FIGURES keys route_churn, adapter_churn, hit_rate, churn_free_ticks,
peak_route_churn, unserved_ratio, peak_memory_bytes (definitions in _usage_sim.py).

Scenarios: the four `dynamo-*` traces of NVIDIA Dynamo's LoRA simulation (8 pods x 4 running
adapters, 100 adapters, 200 ticks of 3 s, seed 42; _usage_workload.py); `drift` (50 pods, 2,000
adapters whose popularity changes rank, bursts, memory and rank limits); `large` (1,000 pods,
10,000 adapters). A pod is vLLM with `--max-loras 4 --max-cpu-loras 32`: 4 adapters run at once
(the LRU the figures count hits in, Dynamo's "4 resident"), 32 stay registered (the placement).

- fixed: the real `Scheduler` with the adapters as a default LoraAdapter gives them (no
  `replicas`: every pod with room), pods without active slots, no demand: today's controller.
- demand: `RateEstimator` -> `ReplicaPlanner` -> `Scheduler` with `demand_rps` and
  `active_slots`, every tick (a reconcile), from the counts the router reports.
- hrw: Dynamo's rendezvous-hashing allocator (_usage_hrw.py), to calibrate against its figures;
  `null` in `large`, where this Python reproduction costs O(adapters x pods) per tick (minutes).

`incremental_ms` is the median CPU time of the scheduler's call in `large` once it runs from its
last answer (a reconcile's demand update); CPU time, since the machine is shared.

Also printed (not in the JSON): `fixed` with `replicas: 1` for every adapter, the baseline a user
who sized replicas by hand would have today, and which targets hold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from _usage_sim import Meter, Placement, Pods, simulate, simulate_hrw
from _usage_workload import SCENARIOS, TICK_SECONDS, Trace, drifting

from lora_controller.scheduler import AdapterDemand, AdapterKey, PodCapacity, PodKey, Scheduler
from lora_controller.scheduler.scaling import DemandSignal, RateEstimator, ReplicaPlanner, Scaling

MI = 1 << 20
GI = 1 << 30
BASE = "meta-llama/Llama-3.1-8B-Instruct"
MAX_LORAS = 4
MAX_CPU_LORAS = 32
PER_RANK = 5 * MI
"""LoRA weights of Llama-3.1-8B on every linear layer, bf16: 5 MiB per unit of rank."""
SCALING = Scaling(min_replicas=1, max_replicas=4, target_rps=5.0)


@dataclass
class Cluster:
    """Pods and adapters of one scenario; `names[k]` is the adapter of popularity index k."""

    pods: list[PodCapacity]
    adapters: list[AdapterDemand]
    names: list[str]
    scaling: dict[AdapterKey, Scaling]

    def memory(self) -> Callable[[str], int]:
        sizes = {a.key.name: a.memory_bytes for a in self.adapters}
        return sizes.__getitem__


def cluster(trace: Trace, *, pods: int, seed: int, crs: int = 1, zones: int = 1,
            memory: Sequence[int | None] = (None,), low_rank_every: int = 0,
            min_replicas: int = 1) -> Cluster:
    """Adapters named independently of their popularity (a seeded shuffle), ranks 8-64."""
    rng = random.Random(seed)
    order = list(range(trace.adapters))
    rng.shuffle(order)
    names = [f"lora-{order[k]:05d}" for k in range(trace.adapters)]
    sets: list[AdapterDemand] = []
    scaling: dict[AdapterKey, Scaling] = {}
    for k, name in enumerate(names):
        rank = rng.choice([8, 16, 16, 32, 64])
        key = AdapterKey("bench", f"cr-{k % crs:02d}", name)
        sets.append(AdapterDemand(key=key, base_model=BASE, memory_bytes=rank * PER_RANK, rank=rank))
        scaling[key] = Scaling(min_replicas, SCALING.max_replicas, SCALING.target_rps)
    pod_list = [
        PodCapacity(
            key=PodKey(f"vllm-{i:04d}"), base_model=BASE, adapter_slots=MAX_CPU_LORAS,
            max_lora_rank=16 if low_rank_every and i % low_rank_every == 0 else 64,
            memory_capacity_bytes=memory[i % len(memory)], node=f"node-{i // 2:03d}",
            zone=f"zone-{i % zones}" if zones > 1 else None,
        )
        for i in range(pods)
    ]
    return Cluster(pod_list, sets, names, scaling)


def run_fixed(trace: Trace, c: Cluster) -> Meter:
    # Today's controller gets the same input every reconcile, and the scheduler is deterministic:
    # one call gives every tick's placement.
    placement = {k.name: v for k, v in Scheduler().schedule(c.adapters, c.pods).placement.items()}

    def plan(tick: int, now: float, row: Sequence[int]) -> Placement:
        return placement

    return simulate(trace.counts, c.names, plan, Pods([p.key for p in c.pods], MAX_LORAS),
                    c.memory(), TICK_SECONDS)


def run_demand(trace: Trace, c: Cluster, timings: list[float] | None = None) -> Meter:
    pods = [PodCapacity(**{**_fields(p), "active_slots": MAX_LORAS}) for p in c.pods]
    estimator, planner, scheduler = RateEstimator(), ReplicaPlanner(), Scheduler()
    signal = DemandSignal()
    keys = [a.key for a in c.adapters]
    demands = {a.key: a for a in c.adapters}
    last: dict[AdapterKey, tuple[PodKey, ...]] = {}

    def plan(tick: int, now: float, row: Sequence[int]) -> Placement:
        nonlocal last
        for k, count in enumerate(row):
            if count:
                estimator.observe(keys[k], count, TICK_SECONDS, now)
        rates = {key: float(r) for key, r in estimator.rates(now).items()
                 if isinstance(key, AdapterKey)}
        held = {key: len(v) for key, v in last.items()}
        replicas = planner.plan(rates, c.scaling, held, now)
        passed = signal.update({key: rates.get(key, 0.0) for key in keys})
        for key in keys:
            old = demands[key]
            rate = passed[key]
            if old.replicas != replicas[key] or old.demand_rps != rate:
                demands[key] = AdapterDemand(
                    key=key, base_model=old.base_model, memory_bytes=old.memory_bytes,
                    rank=old.rank, replicas=replicas[key], demand_rps=rate)
        start = time.process_time()
        result = scheduler.schedule(list(demands.values()), pods, last)
        if timings is not None and tick > 0:
            timings.append(time.process_time() - start)
        last = dict(result.placement)
        return {k.name: v for k, v in last.items()}

    return simulate(trace.counts, c.names, plan, Pods([p.key for p in pods], MAX_LORAS),
                    c.memory(), TICK_SECONDS)


def _fields(p: PodCapacity) -> dict[str, object]:
    return {name: getattr(p, name) for name in PodCapacity.__dataclass_fields__}


def run_scenario(trace: Trace, c: Cluster, *, hrw: bool = True,
                 timings: list[float] | None = None) -> dict[str, dict[str, float | int] | None]:
    out: dict[str, dict[str, float | int] | None] = {}
    one = Cluster(c.pods, [dataclasses.replace(a, replicas=1) for a in c.adapters], c.names,
                  c.scaling)
    for mode, runner in (("fixed", lambda: run_fixed(trace, c)),
                         ("fixed (replicas: 1)", lambda: run_fixed(trace, one)),
                         ("demand", lambda: run_demand(trace, c, timings))):
        start = time.perf_counter()
        meter = runner()
        out[mode] = meter.figures()
        print(f"{trace.name} {mode}: {out[mode]} ({time.perf_counter() - start:.1f} s)", flush=True)
    if not hrw:
        out["hrw"] = None
    else:
        start = time.perf_counter()
        out["hrw"] = simulate_hrw(trace.counts, c.names, len(c.pods), MAX_LORAS, c.memory()).figures()
        print(f"{trace.name} hrw: {out['hrw']} ({time.perf_counter() - start:.1f} s)", flush=True)
    _check_targets(trace.name, out)
    del out["fixed (replicas: 1)"]
    return out


MIN_COST_FLOW = {  # Dynamo's figures: route churn, hit rate
    "dynamo-hot": (389, 0.675), "dynamo-daily": (444, 0.671),
    "dynamo-spike": (374, 0.669), "dynamo-mmpp": (565, 0.681),
}


def _check_targets(name: str, out: dict[str, dict[str, float | int] | None]) -> None:
    d, f = out["demand"], out["fixed"]
    assert d is not None and f is not None
    checks = [
        ("hit_rate > fixed", d["hit_rate"] > f["hit_rate"]),
        ("unserved_ratio <= fixed", d["unserved_ratio"] <= f["unserved_ratio"]),
        ("peak_memory_bytes <= fixed", d["peak_memory_bytes"] <= f["peak_memory_bytes"]),
    ]
    if name in MIN_COST_FLOW:
        churn, hit = MIN_COST_FLOW[name]
        checks.append((f"beats min-cost flow ({churn} / {hit})",
                       d["route_churn"] < churn and d["hit_rate"] > hit))
    print(f"{name} targets: " + ", ".join(f"{what}: {'yes' if ok else 'NO'}" for what, ok in checks))


HRW_DYNAMO = {  # Dynamo's figures for its HRW allocator: route churn, hit rate
    "dynamo-hot": (1246, 0.665), "dynamo-daily": (1328, 0.658),
    "dynamo-spike": (1301, 0.664), "dynamo-mmpp": (1109, 0.674),
}


def calibrate(seeds: range) -> None:
    """HRW on the dynamo-* traces over many seeds, adapters named as Dynamo names them, beside
    Dynamo's own HRW figures: is our trace and metric the same as theirs?"""
    for name, make in SCENARIOS.items():
        churn, hits = [], []
        for seed in seeds:
            trace = make(seed=seed)
            names = [f"lora-{k:03d}" for k in range(trace.adapters)]
            f = simulate_hrw(trace.counts, names, 8, MAX_LORAS, lambda _: 0).figures()
            churn.append(f["route_churn"])
            hits.append(f["hit_rate"])
        theirs = HRW_DYNAMO[name]
        print(f"calibration {name}: route churn {statistics.mean(churn):.0f} "
              f"(sd {statistics.stdev(churn):.0f}, {min(churn)}-{max(churn)}), hit rate "
              f"{statistics.mean(hits):.3f} (sd {statistics.stdev(hits):.3f}, "
              f"{min(hits):.3f}-{max(hits):.3f}) over {len(seeds)} seeds; Dynamo: {theirs[0]}, "
              f"{theirs[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--smoke", action="store_true", help="tiny scenarios (tests)")
    parser.add_argument("--calibrate", action="store_true",
                        help="only HRW on the dynamo-* traces over seeds 1-20 (no JSON)")
    args = parser.parse_args()
    if args.calibrate:
        calibrate(range(1, 21))
        return
    seed = args.seed
    scenarios: dict[str, dict[str, dict[str, float | int] | None]] = {}
    ticks = 20 if args.smoke else 200
    for name, make in SCENARIOS.items():
        trace = make(seed=seed, ticks=ticks)
        scenarios[name] = run_scenario(trace, cluster(trace, pods=8, seed=seed))
    drift = drifting("drift", n=200 if args.smoke else 2000, ticks=ticks, total_rate=300.0,
                     seed=seed, swaps_per_tick=20, bursts=2 if args.smoke else 8)
    scenarios["drift"] = run_scenario(drift, cluster(
        drift, pods=50, seed=seed, crs=20, zones=3, memory=(4 * GI, 4 * GI, 4 * GI, 4 * GI, 3 * GI),
        low_rank_every=5, min_replicas=0))
    timings: list[float] = []
    n_large, pods_large = (1000, 100) if args.smoke else (10_000, 1000)
    large = drifting("large", n=n_large, ticks=10 if args.smoke else 30, total_rate=4000.0,
                     seed=seed, swaps_per_tick=100, bursts=3)
    scenarios["large"] = run_scenario(large, cluster(
        large, pods=pods_large, seed=seed, crs=400, zones=3, memory=(4 * GI,), low_rank_every=5),
        hrw=False, timings=timings)
    incremental_ms = statistics.median(timings) * 1000 if timings else 0.0
    print(f"large: scheduler per reconcile after the first: median {incremental_ms:.2f} ms CPU, "
          f"max {max(timings, default=0) * 1000:.2f} ms over {len(timings)} reconciles")
    print(json.dumps({"scenarios": scenarios, "incremental_ms": round(incremental_ms, 2),
                      "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
