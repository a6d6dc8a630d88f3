"""Benchmark of the LoRA scheduler: full placement, incremental re-placement, optimality.

Run: `python bench/scheduler.py` (from the repository root, in the project's virtualenv). It prints
its figures, and as its last line one JSON object with the keys `full_placement_s`, `incremental_s`,
`optimality_ratio`, `adapters`, `pods` (and a few more), so a script can check them.

The large instance is one base model (the reconciler schedules a base model at a time, and one
big pool is the hardest case): 1,000 pods on 250 nodes in 3 zones, `--max-cpu-loras` 32 (a quarter
48), `--max-lora-rank` 64 (a fifth 16), 1-1.5Gi of adapter memory each, a tenth with a foreign
adapter reserved; 10,000 adapters of rank 8-64 sized like real LoRA weights (rank x 1-4Mi),
priorities 0/10/100, a fifth with policy None, 1-3 replicas, and 5 adapters on every pod. Demand is
a little above the pool's memory, so the run leaves some adapters short and the incremental run
preempts.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import random
import statistics
import sys
import time

from lora_controller.scheduler import (
    AdapterDemand,
    AdapterKey,
    PodCapacity,
    PodKey,
    PreemptionPolicy,
    Scheduler,
    schedule,
)
from lora_controller.scheduler.optimum import optimality_ratio, small_instance

GI = 1 << 30
MI = 1 << 20
BASE = "meta-llama/Llama-3.1-8B-Instruct"


def large_instance(
    seed: int, *, adapters: int, pods: int, selectors: bool = False
) -> tuple[list[AdapterDemand], list[PodCapacity]]:
    """The benchmark's cluster: see the module docstring. With `selectors`, the same cluster where
    a third of the CRs select the even pods and a third the odd ones (one set object per CR, as
    the reconciler builds them)."""
    rng = random.Random(seed)
    pod_list = [
        PodCapacity(
            key=PodKey(f"vllm/llama-{i:04d}"),
            base_model=BASE,
            adapter_slots=rng.choice([32, 32, 32, 48]),
            max_lora_rank=16 if i % 5 == 0 else 64,
            memory_capacity_bytes=rng.choice([1024, 1280, 1536]) * MI,
            node=f"node-{i // 4:03d}",
            zone=f"zone-{(i // 4) % 3}",
            reserved_slots=1 if i % 10 == 0 else 0,
            reserved_memory_bytes=256 * MI if i % 10 == 0 else 0,
        )
        for i in range(pods)
    ]
    groups = [frozenset(p.key for p in pod_list[g::2]) for g in (0, 1)]
    per_cr: dict[str, frozenset[PodKey] | None] = {}
    adapter_list: list[AdapterDemand] = []
    for j in range(adapters):
        cr = f"cr-{j % 400:03d}"
        if cr not in per_cr:
            g = (j % 400) % 3
            per_cr[cr] = frozenset(groups[g - 1]) if selectors and g else None
        rank = rng.choice([8, 8, 16, 16, 32, 64])
        adapter_list.append(
            AdapterDemand(
                key=AdapterKey(f"team-{j % 40:02d}", cr, f"adapter-{j:05d}"),
                base_model=BASE,
                memory_bytes=rank * rng.randint(1, 4) * MI + rng.randint(0, MI),
                rank=rank,
                priority=rng.choice([0, 0, 0, 10, 10, 100]),
                preemption_policy=(
                    PreemptionPolicy.NONE if rng.random() < 0.2 else PreemptionPolicy.LOWER_PRIORITY
                ),
                replicas=None if j < 5 else rng.choice([1, 1, 2, 3]),
                eligible_pods=per_cr[cr],
            )
        )
    return adapter_list, pod_list


def without_pod(adapters: list[AdapterDemand], lost: PodKey) -> list[AdapterDemand]:
    """The demands the reconciler builds once `lost` is gone: every CR's set rebuilt without it."""
    rebuilt: dict[int, frozenset[PodKey]] = {}
    out = []
    for a in adapters:
        if a.eligible_pods is None:
            out.append(a)
            continue
        new = rebuilt.get(id(a.eligible_pods))
        if new is None:
            new = rebuilt[id(a.eligible_pods)] = a.eligible_pods - {lost}
        out.append(dataclasses.replace(a, eligible_pods=new))
    return out


def _timed(fn, repeat: int):  # type: ignore[no-untyped-def]
    """Best-of-`repeat` wall time of fn() (garbage collector off while timing), and its result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best, result


def measure(
    adapters: list[AdapterDemand], pods: list[PodCapacity], repeat: int, *, label: str
) -> dict[str, float]:
    """Time a full placement and an incremental one after losing the fullest pod; print both."""
    full_s, full = _timed(lambda: schedule(adapters, pods), repeat)
    placed = sum(len(p) for p in full.placement.values())
    print(f"{label}full placement: {len(adapters)} adapters on {len(pods)} pods in "
          f"{full_s * 1000:.1f} ms ({placed} replicas placed, {len(full.unplaced)} adapters short, "
          f"{len(full.moves)} moves)")

    # Incremental: a Scheduler that made the full placement loses one pod (the fullest). The
    # demands are rebuilt as the reconciler would (selector sets without the lost pod).
    by_pod: dict[PodKey, int] = {}
    for keys in full.placement.values():
        for key in keys:
            by_pod[key] = by_pod.get(key, 0) + 1
    lost = max(sorted(by_pod), key=lambda k: by_pod[k])
    remaining = [p for p in pods if p.key != lost]
    after = without_pod(adapters, lost)
    observed = {k: tuple(p for p in v if p != lost) for k, v in full.placement.items()}
    times: list[float] = []
    moved = preempted = moves = 0
    for _ in range(repeat):
        scheduler = Scheduler()
        first = scheduler.schedule(adapters, pods)
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            again = scheduler.schedule(after, remaining, observed)
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
        assert scheduler.incremental, "the incremental path was not taken"
        assert again == schedule(after, remaining, observed), "incremental != full"
        moved = sum(1 for k in first.placement if first.placement[k] != again.placement[k])
        preempted = len(again.preemptions)
        moves = len(again.moves)
    incremental_s = min(times)
    rebuild_s, _ = _timed(lambda: schedule(after, remaining, observed), 1)
    print(f"{label}incremental after losing pod {lost} ({by_pod[lost]} replicas): "
          f"{incremental_s * 1000:.2f} ms ({moved} adapters changed, {preempted} preemptions, "
          f"{moves} moves; a full re-run of the same input takes {rebuild_s * 1000:.1f} ms)")
    return {"full_s": full_s, "incremental_s": incremental_s, "placed": placed,
            "short": len(full.unplaced)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=1_000)
    parser.add_argument("--instances", type=int, default=500, help="small instances for optimality")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    adapters, pods = large_instance(args.seed, adapters=args.adapters, pods=args.pods)
    figures = measure(adapters, pods, args.repeat, label="")
    sel_adapters, sel_pods = large_instance(
        args.seed, adapters=args.adapters, pods=args.pods, selectors=True
    )
    with_selectors = measure(sel_adapters, sel_pods, args.repeat, label="with podSelectors, ")

    rng = random.Random(args.seed)
    ratios = []
    for _ in range(args.instances):
        small_adapters, small_pods = small_instance(rng)
        result = schedule(small_adapters, small_pods)
        ratios.append(optimality_ratio(small_adapters, small_pods, result.placement))
    ratio = statistics.fmean(ratios)
    optimal = sum(1 for r in ratios if r >= 1 - 1e-9)
    print(f"optimality: mean ratio {ratio:.4f} over {len(ratios)} small instances "
          f"(min {min(ratios):.3f}, optimal in {optimal})")
    print(json.dumps({
        "full_placement_s": round(figures["full_s"], 4),
        "incremental_s": round(figures["incremental_s"], 5),
        "optimality_ratio": round(ratio, 4),
        "adapters": args.adapters,
        "pods": args.pods,
        "replicas_placed": figures["placed"],
        "adapters_short": figures["short"],
        "selectors_full_placement_s": round(with_selectors["full_s"], 4),
        "selectors_incremental_s": round(with_selectors["incremental_s"], 5),
        "optimality_instances": len(ratios),
        "optimality_min": round(min(ratios), 4),
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
