"""Simulator behaviour beyond the recordings: CLI, many pods, control endpoint, start-up adapters, slots."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from lora_controller.simulator import PodConfig, SimulatedFleet, SimulatorStartError
from lora_controller.simulator.config import config_from_args
from lora_controller.simulator.errors import sanitize_message
from lora_controller.vllm.serve_args import LoraModule
from tests.vllm.conftest import PodFactory

BIN = Path(sys.executable).parent / "lora-vllm-sim"


def test_cli_help() -> None:
    out = subprocess.run([str(BIN), "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "--max-lora-rank" in out.stdout and "--runtime-lora-updating" in out.stdout


def test_cli_parses_vllm_flags_and_ignores_others() -> None:
    config, listen, ignored = config_from_args(
        ["--model", "/m", "--max-loras", "2", "--max_cpu_loras=4", "--dtype", "float32", "--port", "9001",
         "--listen", "127.0.0.1:9002", "--lora-modules", "a=/x/a", "--no-runtime-lora-updating"],
        env={},
    )
    assert (config.max_loras, config.cpu_loras, config.runtime_lora_updating) == (2, 4, False)
    assert config.lora_modules == (LoraModule("a", "/x/a"),)
    assert listen == [("127.0.0.1", 9001), ("127.0.0.1", 9002)] and ignored == ["--dtype", "float32"]
    assert config_from_args(["--model", "m"], env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "0"})[0].runtime_lora_updating \
        is False


async def test_cli_serves_several_pods(model_dir: str, adapters_root: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(BIN), "--model", model_dir, "--port", "0", "--port", "0", "--pods", "3", "--max-lora-rank", "8",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true"},
    )
    try:
        assert proc.stdout is not None
        urls = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()[1] for _ in range(3)]
        assert len(set(urls)) == 3
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{urls[0]}/v1/load_lora_adapter",
                              json={"lora_name": "a", "lora_path": str(adapters_root / "lora-a")}) as r:
                assert r.status == 200 and "content-type" not in {k.lower() for k in r.headers}
            for url, expected in ((urls[0], ["a"]), (urls[1], [])):
                async with s.get(f"{url}/v1/models") as r:
                    assert [m["id"] for m in (await r.json())["data"][1:]] == expected
            async with s.post(f"{urls[1]}/_sim/faults", json={"error_rate_500": 1.0}) as r:
                assert (await r.json())["error_rate_500"] == 1.0
            async with s.get(f"{urls[1]}/v1/models") as r:
                assert r.status == 500
            async with s.get(f"{urls[0]}/_sim/state") as r:
                state = await r.json()
            assert [a["name"] for a in state["adapters"]] == ["a"]
            assert state["request_counts"]["POST /v1/load_lora_adapter"] == 1
            assert state["load_log"][0]["status"] == 200
    finally:
        proc.terminate()
        await proc.wait()


async def test_control_restart_and_unknown_knob(make_pod: PodFactory, adapters_root: Path) -> None:
    pod, ep = await make_pod()
    async with aiohttp.ClientSession() as s:
        async with s.post(ep.url("/v1/load_lora_adapter"),
                          json={"lora_name": "a", "lora_path": str(adapters_root / "lora-a")}) as r:
            assert r.status == 200
        async with s.post(ep.url("/_sim/faults"), json={"no_such_knob": 1}) as r:
            assert r.status == 400
        async with s.post(ep.url("/_sim/restart"), json={"downtime": 0.05}) as r:
            assert r.status == 202
    for _ in range(100):
        if pod.restarts == 1 and pod.addresses:
            break
        await asyncio.sleep(0.02)
    assert pod.restarts == 1 and pod.adapters == {}
    async with aiohttp.ClientSession() as s, s.get(ep.url("/v1/models")) as r:
        assert len((await r.json())["data"]) == 1


async def test_failing_startup_adapter_aborts_start(fleet: SimulatedFleet, model_dir: str, adapters_root: Path) -> None:
    config = PodConfig(model=model_dir, max_lora_rank=8,
                       lora_modules=(LoraModule("big", str(adapters_root / "lora-r16")),))
    with pytest.raises(SimulatorStartError, match="LoRA rank 16 is greater than max_lora_rank 8"):
        await fleet.add_pod(config)


async def test_one_lora_slot_serialises_adapters(make_pod: PodFactory, adapters_root: Path) -> None:
    pod, ep = await make_pod(max_loras=1, max_cpu_loras=1)
    pod.faults.token_latency_ms = 10
    async with aiohttp.ClientSession() as s:
        for name in "ab":
            async with s.post(ep.url("/v1/load_lora_adapter"),
                              json={"lora_name": name, "lora_path": str(adapters_root / f"lora-{name}")}) as r:
                assert r.status == 200

        async def complete(model: str) -> float:
            async with s.post(ep.url("/v1/completions"),
                              json={"model": model, "prompt": "hello world", "max_tokens": 20}) as r:
                assert r.status == 200
                body = await r.json()
                assert body["usage"]["completion_tokens"] == 20 and body["model"] == model
            return time.monotonic()

        start = time.monotonic()
        done_a, done_b = await asyncio.gather(complete("a"), complete("b"))
    # b waits for a's slot: total about two generations, both succeed.
    assert max(done_a, done_b) - start >= 0.38
    assert abs(done_a - done_b) >= 0.15


async def test_completion_text_is_deterministic(make_pod: PodFactory) -> None:
    _, ep = await make_pod()
    async with aiohttp.ClientSession() as s:
        texts = []
        for _ in range(2):
            async with s.post(ep.url("/v1/completions"),
                              json={"prompt": "hello world", "max_tokens": 5, "temperature": 0}) as r:
                body = await r.json()
                texts.append(body["choices"][0]["text"])
                assert body["usage"]["prompt_tokens"] == 7  # the numpy tokenizer's BPE of "hello world"
    assert texts[0] == texts[1]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "check"),
    [
        ("GET", "/v1/load_lora_adapter", None, {}, 405, {"detail": "Method Not Allowed"}),
        ("GET", "/no/such/route", None, {}, 404, {"detail": "Not Found"}),
        ("POST", "/v1/load_lora_adapter", '{"lora_name": 1, "lora_path": "x"}', {"Content-Type": "application/json"},
         400, "'loc': 'body.lora_name', 'msg': 'Input should be a valid string'"),
        ("POST", "/v1/load_lora_adapter", '{"lora_name": "a", ', {"Content-Type": "application/json"},
         400, "'type': 'json_invalid'"),
        ("POST", "/v1/unload_lora_adapter", '{"lora_name": "x"}', {}, 400, "Unsupported Media Type"),
        ("POST", "/adapters", '{"src": "/tmp/x"}', {"Content-Type": "application/json"}, 400, "Field required"),
    ],
)
async def test_framework_answers(make_pod: PodFactory, method: str, path: str, body: str | None,
                                 headers: dict[str, str], status: int, check: object) -> None:
    _, ep = await make_pod()
    async with aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as s, s.request(
        method, ep.url(path), data=body.encode() if body else None, headers=headers
    ) as r:
        assert r.status == status and r.content_type == "application/json"
        data = await r.json()
    if isinstance(check, dict):
        assert data == check
    else:
        assert str(check) in data["error"]["message"] and data["error"]["code"] == status


def test_sanitize_message_matches_vllm() -> None:
    assert sanitize_message("No adapter found for /tmp/x/lora-a") == "No adapter found for <path>"
    assert sanitize_message("Valid aliases: /tmp/a/tiny-llama.") == "Valid aliases: <path>"
    assert sanitize_message("<obj at 0x7f00ab>") == "<obj>"
    assert sanitize_message("see /data/models/cfg.json now") == "see <path> now"
    assert sanitize_message("relative some-org/model stays") == "relative some-org/model stays"


async def test_many_pods_in_one_process(fleet: SimulatedFleet, model_dir: str) -> None:
    pods = await fleet.add_pods([PodConfig(model=model_dir, max_lora_rank=8)] * 200)
    assert len({p.port for p in pods}) == 200
    async with aiohttp.ClientSession() as s:
        async def health(port: int) -> int:
            async with s.get(f"http://127.0.0.1:{port}/health") as r:
                return r.status
        statuses = await asyncio.gather(*(health(p.port) for p in pods))
    assert set(statuses) == {200}
    json.dumps(pods[0].state())


async def test_served_names_and_startup_adapter_parents(make_pod: PodFactory, adapters_root: Path, model_dir: str) -> None:
    _, ep = await make_pod(
        served_model_names=("base", "alias"),
        lora_modules=(LoraModule("d", str(adapters_root / "lora-d")),
                      LoraModule("e", str(adapters_root / "lora-e"), base_model_name="alias")),
    )
    async with aiohttp.ClientSession() as s, s.get(ep.url("/v1/models")) as r:
        cards = (await r.json())["data"]
    assert [(c["id"], c["root"], c["parent"]) for c in cards] == [
        ("base", model_dir, None),
        ("alias", model_dir, None),
        ("d", str(adapters_root / "lora-d"), "base"),
        ("e", str(adapters_root / "lora-e"), "alias"),
    ]
    async with aiohttp.ClientSession() as s, s.post(
        ep.url("/v1/completions"), json={"model": "nope", "prompt": "x", "max_tokens": 1}
    ) as r:
        assert r.status == 404
        assert (await r.json())["error"]["message"] == "The model `nope` does not exist. Valid aliases: base, alias."
