"""Every recorded exchange of a real vLLM 0.32 server, replayed against the simulator, must match."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lora_controller.simulator import SimulatedFleet
from lora_controller.simulator.config import config_from_args
from tests.vllm import conformance

DIRECTORY = conformance.conformance_dir()
GROUPS = conformance.load_exchanges(DIRECTORY)


@pytest.fixture(scope="module")
def fixtures_root() -> Iterator[Path]:
    """The numpy-built fixtures, under /tmp (vLLM sanitises /tmp paths to `<path>`)."""
    root = conformance.build_fixtures(DIRECTORY)
    yield root


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


@pytest.mark.parametrize("group", sorted(GROUPS))
async def test_group_replays_identically(group: str, fixtures_root: Path) -> None:
    model_dir = str(fixtures_root / "tiny-llama")
    argv, env = conformance.simulator_argv(group, model_dir=model_dir, directory=DIRECTORY)
    config, _, _ = config_from_args(argv, env={**{k: v for k, v in os.environ.items() if k != "VLLM_ALLOW_RUNTIME_LORA_UPDATING"}, **env})
    mapping = {"{MODEL}": model_dir, "{ADAPTERS}": str(fixtures_root)}
    async with SimulatedFleet() as fleet:
        pod = await fleet.add_pod(config, host="127.0.0.1", port=0)
        results = await conformance.replay_group(GROUPS[group], host="127.0.0.1", port=pod.port, mapping=mapping)
    failures = []
    for exchange, answer in results:
        problems = conformance.compare(exchange, answer, model_dir=model_dir, root=str(fixtures_root))
        if problems:
            failures.append(f"{group}#{exchange['seq']} {exchange['name']}:\n    " + "\n    ".join(problems))
    assert not failures, "\n".join(failures)
