"""Every recorded exchange of a real vLLM 0.32 server, replayed against the simulator, must match;
and, in the same run, against real vLLM servers started with each group's flags (the differential
run): real vLLM, the simulator and the recording must give the same normal form."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lora_controller.devenv.realvllm import RealVllmServer, start_servers, stop_servers
from lora_controller.simulator import SimulatedFleet
from lora_controller.simulator.config import config_from_args
from tests.realvllm import lane
from tests.vllm import conformance

DIRECTORY = conformance.conformance_dir()
GROUPS = conformance.load_exchanges(DIRECTORY)


@pytest.fixture(scope="module")
def fixtures_root() -> Iterator[Path]:
    """The numpy-built fixtures, under /tmp (vLLM sanitises /tmp paths to `<path>`)."""
    root = conformance.build_fixtures(DIRECTORY)
    yield root
    shutil.rmtree(root.parents[1], ignore_errors=True)  # the temporary folder build_fixtures made


def test_recordings_found() -> None:
    assert GROUPS, f"no recorded exchanges in {DIRECTORY}"
    assert all(items for items in GROUPS.values())


def test_harness_reads_group_flags_from_readme() -> None:
    argv, env = conformance.simulator_argv("max-loras-1", model_dir="/tmp/m", directory=DIRECTORY)
    config, _, _ = config_from_args(argv, env=env)
    assert config.max_loras == 1 and config.cpu_loras == 1 and config.max_lora_rank == 8
    argv, env = conformance.simulator_argv("runtime-off", model_dir="/tmp/m", directory=DIRECTORY)
    assert config_from_args(argv, env=env)[0].runtime_lora_updating is False
    argv, env = conformance.simulator_argv("some-new-group", model_dir="/tmp/m", directory=DIRECTORY)
    config, _, _ = config_from_args(argv, env=env)
    assert config.runtime_lora_updating is True and config.max_loras == 2 and config.max_model_len == 256


def test_a_difference_shows_both_answers() -> None:
    sim = conformance.Normal(200, None, "Success: LoRA adapter 'a' added successfully.")
    real = conformance.Normal(400, "application/json", {"error": {"message": "m", "code": 400}})
    problems = conformance.differences(sim, real, names=("simulator", "real vLLM"))
    assert problems[:3] == ["status 200 != 400", "content-type None != 'application/json'", "body differs"]
    assert "simulator: 200 - Success: LoRA adapter 'a' added successfully." in problems[3]
    assert 'real vLLM: 400 application/json {"error": {"message": "m", "code": 400}}' in problems[3]
    assert conformance.differences(real, real) == []


async def replay_on_simulator(group: str, fixtures_root: Path) -> list[tuple[dict[str, Any], conformance.Answer]]:
    """A group's exchanges against a fresh simulated pod started with the group's flags."""
    model_dir = str(fixtures_root / "tiny-llama")
    argv, env = conformance.simulator_argv(group, model_dir=model_dir, directory=DIRECTORY)
    config, _, _ = config_from_args(argv, env={**{k: v for k, v in os.environ.items() if k != "VLLM_ALLOW_RUNTIME_LORA_UPDATING"}, **env})
    mapping = {"{MODEL}": model_dir, "{ADAPTERS}": str(fixtures_root)}
    async with SimulatedFleet() as fleet:
        pod = await fleet.add_pod(config, host="127.0.0.1", port=0)
        return await conformance.replay_group(GROUPS[group], host="127.0.0.1", port=pod.port, mapping=mapping)


@pytest.mark.parametrize("group", sorted(GROUPS))
async def test_group_replays_identically(group: str, fixtures_root: Path) -> None:
    model_dir = str(fixtures_root / "tiny-llama")
    results = await replay_on_simulator(group, fixtures_root)
    failures = []
    for exchange, answer in results:
        problems = conformance.compare(exchange, answer, model_dir=model_dir, root=str(fixtures_root))
        if problems:
            failures.append(f"{group}#{exchange['seq']} {exchange['name']}:\n    " + "\n    ".join(problems))
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
async def real_servers(fixtures_root: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, RealVllmServer]]:
    """One fresh real vLLM per group, started in parallel with the group's flags and environment."""
    python = lane.require_vllm_python()
    model_dir = str(fixtures_root / "tiny-llama")
    logs = tmp_path_factory.mktemp("conformance-real")
    servers = {}
    for group in GROUPS:
        flags, env = conformance.server_setup(group, model_dir=model_dir, directory=DIRECTORY)
        servers[group] = RealVllmServer(python, tuple(flags), env, logs / f"{group}.log")
    await start_servers(list(servers.values()))
    try:
        yield servers
    finally:
        await stop_servers(list(servers.values()))


@pytest.mark.timeout(900)  # the first one also waits for the servers to start
@pytest.mark.parametrize("group", sorted(GROUPS))
async def test_real_vllm_and_simulator_answer_alike(
    group: str, fixtures_root: Path, real_servers: dict[str, RealVllmServer]
) -> None:
    model_dir, root = str(fixtures_root / "tiny-llama"), str(fixtures_root)
    mapping = {"{MODEL}": model_dir, "{ADAPTERS}": root}
    real = await conformance.replay_group(GROUPS[group], host="127.0.0.1", port=real_servers[group].port,
                                          mapping=mapping)
    simulated = await replay_on_simulator(group, fixtures_root)
    failures = []
    for (exchange, real_answer), (_, sim_answer) in zip(real, simulated, strict=True):
        problems: list[str] = []
        real_form = conformance.normal_form(exchange, real_answer, problems, model_dir=model_dir, root=root)
        sim_form = conformance.normal_form(exchange, sim_answer, problems, model_dir=model_dir, root=root)
        problems += conformance.differences(sim_form, real_form, names=("simulator", "real vLLM"))
        problems += conformance.differences(real_form, conformance.recorded_form(exchange),
                                            names=("real vLLM", "recorded"))
        if problems:
            failures.append(f"{group}#{exchange['seq']} {exchange['name']}:\n    " + "\n    ".join(problems))
    assert not failures, "\n".join(failures)
