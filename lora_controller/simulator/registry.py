"""The LoRA registry of one simulated vLLM server, and its engine's load path.

Follows `OpenAIServingModels.load_lora_adapter` / `unload_lora_adapter` of vLLM 0.32 in their check
order (missing fields, a name clashing with a served model, an adapter already loaded unless in
place), then the worker's file checks (`adapter_files.read_adapter`), so a client meets the same
statuses and messages as with a real pod. Keeps what tests and benchmarks read: the adapters in
registration order, a load log with timestamps and the most concurrent loads seen.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from lora_controller.simulator.adapter_files import (
    AdapterFiles,
    AdapterLoadError,
    AdapterNotFound,
    read_adapter,
)
from lora_controller.simulator.config import FaultKnobs, PodConfig
from lora_controller.simulator.errors import vllm_error
from lora_controller.simulator.protocol import LoadLoRAAdapterRequest, UnloadLoRAAdapterRequest

Outcome = tuple[int, str | dict[str, Any]]


class SimulatorStartError(RuntimeError):
    """The server would not have started (a `--lora-modules` adapter failed to load)."""


@dataclass
class RegisteredAdapter:
    """An adapter in the front end's registry (what `/v1/models` lists)."""

    name: str
    path: str
    int_id: int
    files: AdapterFiles
    loaded_at: float
    static: bool = False
    base_model_name: str | None = None


@dataclass(frozen=True)
class LoadEvent:
    """One load or unload the pod handled, for tests and benchmarks."""

    at: float
    finished_at: float
    action: str  # "load" | "unload"
    name: str
    path: str | None
    status: int
    inplace: bool = False


def _invalid(message: str) -> tuple[int, dict[str, Any]]:
    return 400, vllm_error(message, err_type="InvalidUserInput", code=400)


class LoraRegistry:
    """Registered adapters and the load/unload path that changes them, one lock per adapter name."""

    def __init__(self, config: PodConfig, faults: FaultKnobs, expected_modules: frozenset[str] | None) -> None:
        self.config = config
        self.faults = faults
        self.expected_modules = expected_modules
        self.adapters: dict[str, RegisteredAdapter] = {}
        self.load_log: list[LoadEvent] = []
        self.max_concurrent_loads = 0
        self._loads_in_flight = 0
        self._id_counter = 0
        self._name_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def forget(self) -> None:
        """What a restart loses: every registered adapter and the ids handed out."""
        self.adapters.clear()
        self._name_locks.clear()
        self._id_counter = 0

    def reset_stats(self) -> None:
        """Clear the load log and the concurrency high-water mark."""
        self.load_log.clear()
        self.max_concurrent_loads = self._loads_in_flight

    async def load_static(self) -> None:
        """Load `--lora-modules` as vLLM's `init_static_loras` does; any failure aborts the start."""
        for module in self.config.lora_modules:
            req = LoadLoRAAdapterRequest(lora_name=module.name, lora_path=module.path)
            base = module.base_model_name if module.base_model_name in self.config.names else None
            status, body = await self.load(req, static=True, base_model_name=base)
            if status != 200:
                raise SimulatorStartError(str(body["error"]["message"]) if isinstance(body, dict) else str(body))

    def _refusal(self, req: LoadLoRAAdapterRequest) -> tuple[int, dict[str, Any]] | None:
        name = req.lora_name
        if not name or not req.lora_path:
            return _invalid("Both 'lora_name' and 'lora_path' must be provided.")
        if name in self.config.names:
            return _invalid(f"The lora adapter '{name}' conflicts with a served base model.")
        if not req.load_inplace and name in self.adapters:
            return _invalid(
                f"The lora adapter '{name}' has already been loaded. If you want to load the adapter in place, "
                "set 'load_inplace' to True."
            )
        return None

    async def load(
        self, req: LoadLoRAAdapterRequest, *, static: bool = False, base_model_name: str | None = None
    ) -> Outcome:
        """`OpenAIServingModels.load_lora_adapter`: checks, then the engine, then the registry."""
        name = req.lora_name
        async with self._name_locks[name]:
            refused = self._refusal(req)
            if refused is not None:
                return refused
            started = time.time()
            self._loads_in_flight += 1
            self.max_concurrent_loads = max(self.max_concurrent_loads, self._loads_in_flight)
            try:
                status, result = await self._engine_add_lora(req)
            finally:
                self._loads_in_flight -= 1
            self.load_log.append(
                LoadEvent(started, time.time(), "load", name, req.lora_path, status, inplace=req.load_inplace)
            )
            if not isinstance(result, AdapterFiles):
                return status, result
            existing = self.adapters.get(name)
            if existing is None:
                self._id_counter += 1
            self.adapters[name] = RegisteredAdapter(
                name=name,
                path=req.lora_path,
                int_id=existing.int_id if existing else self._id_counter,
                files=result,
                loaded_at=time.time(),
                static=static,
                base_model_name=base_model_name,
            )
            return 200, f"Success: LoRA adapter '{name}' added successfully."

    async def _engine_add_lora(self, req: LoadLoRAAdapterRequest) -> tuple[int, AdapterFiles | dict[str, Any]]:
        if self.faults.load_latency_ms > 0:
            await asyncio.sleep(self.faults.load_latency_ms / 1000)
        failure: str | None = None
        if not self.config.enable_lora:
            failure = "LoRA is not enabled. Use --enable-lora to enable LoRA."
        elif self.faults.refuse_loads:
            failure = "simulated engine refusal: no capacity to load LoRA adapters"
        else:
            try:
                return 200, await asyncio.to_thread(
                    read_adapter,
                    req.lora_name,
                    req.lora_path,
                    max_lora_rank=self.config.max_lora_rank,
                    expected_modules=self.expected_modules,
                )
            except AdapterNotFound as exc:
                return 404, vllm_error(str(exc), err_type="NotFoundError", code=404)
            except AdapterLoadError as exc:
                failure = str(exc)
        message = (
            f"Call to add_lora method failed: Worker failed with error '{failure}', "
            "please check the stack trace above for the root cause"
        )
        return 500, vllm_error(message, err_type="InternalServerError", code=500)

    async def unload(self, req: UnloadLoRAAdapterRequest) -> Outcome:
        """`OpenAIServingModels.unload_lora_adapter`."""
        name = req.lora_name
        async with self._name_locks[name]:
            if not name:
                return _invalid("'lora_name' needs to be provided to unload a LoRA adapter.")
            if name not in self.adapters:
                return 404, vllm_error(f"The lora adapter '{name}' cannot be found.", err_type="NotFoundError", code=404)
            started = time.time()
            if self.faults.unload_latency_ms > 0:
                await asyncio.sleep(self.faults.unload_latency_ms / 1000)
            del self.adapters[name]
            self.load_log.append(LoadEvent(started, time.time(), "unload", name, None, 200))
            return 200, f"Success: LoRA adapter '{name}' removed successfully."
