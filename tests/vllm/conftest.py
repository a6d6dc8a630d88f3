"""Fixtures of the vLLM tests: the conformance adapters built once under /tmp, an HTTP session, pods."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lora_controller.simulator import PodConfig, SimulatedFleet, SimulatedPod
from lora_controller.vllm import Endpoint, create_session
from tests.vllm import conformance


@pytest.fixture(scope="session")
def adapters_root() -> Path:
    """The numpy-built conformance fixtures (tiny-llama + lora-a...), under /tmp."""
    return conformance.build_fixtures(conformance.conformance_dir())


@pytest.fixture(scope="session")
def model_dir(adapters_root: Path) -> str:
    return str(adapters_root / "tiny-llama")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with create_session(limit=64, limit_per_host=8) as s:
        yield s


@pytest.fixture
async def fleet() -> AsyncIterator[SimulatedFleet]:
    async with SimulatedFleet() as f:
        yield f


PodFactory = Callable[..., Coroutine[Any, Any, tuple[SimulatedPod, Endpoint]]]


@pytest.fixture
def make_pod(fleet: SimulatedFleet, model_dir: str) -> PodFactory:
    """Start a pod serving the tiny model (max-loras 2, rank 8 like the recordings unless overridden)."""

    async def make(**overrides: Any) -> tuple[SimulatedPod, Endpoint]:
        values: dict[str, Any] = {"model": model_dir, "max_loras": 2, "max_cpu_loras": 3, "max_lora_rank": 8,
                                  "max_model_len": 256}
        values.update(overrides)
        pod = await fleet.add_pod(PodConfig(**values))
        return pod, Endpoint("127.0.0.1", pod.port)

    return make
