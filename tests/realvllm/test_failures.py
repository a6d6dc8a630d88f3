"""Adapters real vLLM cannot serve, and more adapters on a server than its `--max-cpu-loras`.

Which problems the controller catches before calling vLLM is shown on the servers' own logs: a
load vLLM never received leaves no trace there, one it refused leaves its error.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from safetensors.numpy import load_file, save_file

from tests.realvllm import lane
from tests.realvllm.conftest import MAX_CPU_LORAS, Lane

pytestmark = pytest.mark.timeout(900)  # the first test also waits for the servers to start
JSON = dict[str, Any]


def write_neox_style_adapter(fixtures: Path, name: str) -> None:
    """lora-a's weights under GPT-NeoX module names, with no base model in its config: nothing in
    its files says it does not fit a Llama, only loading it does."""
    src, dst = fixtures / "lora-a", fixtures / name
    dst.mkdir(exist_ok=True)
    tensors = load_file(str(src / "adapter_model.safetensors"))
    renamed = {k.replace("self_attn.q_proj", "attention.query_key_value"): v for k, v in tensors.items()
               if "self_attn.q_proj" in k}
    save_file(renamed, str(dst / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "adapter_config.json").read_text())
    config.update(base_model_name_or_path=None, target_modules=["query_key_value"])
    (dst / "adapter_config.json").write_text(json.dumps(config))


async def test_unservable_adapters_fail_with_reasons_and_the_others_load(real_lane: Lane) -> None:
    write_neox_style_adapter(real_lane.fixtures, "lora-neox")
    good = ["lora-a", "lora-b"]
    before_vllm = ["lora-r16", "lora-wrongbase", "lora-noweights"]
    marks = [lane.LogMark(pod.server.log_path) for pod in real_lane.pods.pods.values()]
    await real_lane.apply("mixed", [*good, *before_vllm, "lora-neox"])
    async with real_lane.removed_at_end("mixed"):
        status = await real_lane.wait_status(
            "mixed", lambda s: s.get("phase") == "Partial" and s.get("failedCount") == 4,
            what="Partial with 4 failed adapters")
        reasons = {f["name"]: f["reason"] for f in status["failedAdapters"]}
        assert set(reasons) == {*before_vllm, "lora-neox"}, reasons
        assert "rank 16 exceeds the max-lora-rank" in reasons["lora-r16"], reasons
        assert "trained for 'some-org/other-model', but spec.baseModel is 'tiny-llama'" \
            in reasons["lora-wrongbase"], reasons
        assert "has no weight file" in reasons["lora-noweights"], reasons
        assert "targets modules the base model does not have (query_key_value;" \
            in reasons["lora-neox"], reasons
        assert sorted(status["loadedAdapters"]) == good
        for pod, ids in (await real_lane.listed()).items():
            assert sorted(ids) == good, (pod, ids)
        logs = "\n".join(mark.since() for mark in marks)
        # Caught before calling vLLM: no server ever saw these loads.
        assert "is greater than max_lora_rank" not in logs
        for name in ("lora-wrongbase", "lora-noweights"):
            assert name not in logs, name
        # Learned from vLLM's answer: it refused the NeoX-style adapter with a 500.
        assert "lora-neox, expected target modules" in logs
        refused = lane.load_answers(logs).count(500)
        assert refused >= 1
        await asyncio.sleep(5)  # tried again with backoff (1 s doubling to 60 s), not in a hot loop
        again = lane.load_answers("\n".join(mark.since() for mark in marks)).count(500) - refused
        assert again <= 3 * len(marks), f"{again} more refused loads in 5 s"


async def test_more_adapters_than_max_cpu_loras(real_lane: Lane) -> None:
    pod = "vllm-2"
    url = real_lane.url(pod)
    elsewhere = real_lane.fixtures.parent / "by-hand"  # outside the resource's repository: foreign
    by_hand = {}
    for i, source in enumerate(["lora-a", "lora-b", "lora-c", "lora-d"]):
        shutil.copytree(real_lane.fixtures / source, elsewhere / source, dirs_exist_ok=True)
        by_hand[f"by-hand-{i}"] = str(elsewhere / source)
    assert len(by_hand) > MAX_CPU_LORAS
    try:
        for name, path in by_hand.items():  # vLLM registers them all: the CPU cache only evicts
            code, text = await lane.load(url, name, path)
            assert code == 200, text
        assert await lane.adapter_ids(url) == list(by_hand)
        for name in by_hand:  # each still answers: an evicted one is read from disk again
            code, answer = await lane.complete(url, name)
            assert code == 200 and answer["model"] == name, answer

        await real_lane.apply("ours", ["lora-e"], replicas=3)
        async with real_lane.removed_at_end("ours"):
            status = await real_lane.wait_status(
                "ours", lambda s: s.get("phase") == "Partial" and s.get("loadedAdapters") == ["lora-e"],
                what="Partial: no room on the pod full of adapters loaded by hand")
            listed = await real_lane.listed()
            assert "lora-e" not in listed[pod]
            assert all("lora-e" in listed[p] for p in listed if p != pod), listed
            reason = status["failedAdapters"][0]["reason"]
            assert "--max-cpu-loras" in reason, reason  # its slots are taken by the foreign ones
            metrics = await real_lane.controller_metrics()
            slots = {p: lane.metric(metrics, "lora_controller_pod_slots_used",
                                    f'pod="{real_lane.namespace}/{p}"') for p in listed}
            assert slots == {"vllm-0": 1, "vllm-1": 1, pod: 0}, slots  # ours; foreign ones reserved
            code, view = await real_lane.controller.get(
                f"/v1/pods/{real_lane.namespace}/{pod}/adapters")
            assert code == 200, view
            assert sorted(a["name"] for a in view["adapters"]) == sorted(by_hand), view
            assert listed[pod] == list(by_hand)  # the controller unloaded nothing it does not own
    finally:
        await lane.unload_all(url)
