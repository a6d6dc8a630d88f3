"""The simulated engine's running requests: LoRA slots, generated text, and what `/metrics` reports.

A request for an adapter waits for one of `--max-loras` GPU slots (an adapter already running
shares its slot), as vLLM's scheduler does; text is generated deterministically from the model,
the adapter's path and the prompt. `/metrics` serves vLLM's `vllm:lora_requests_info` gauge (one
series per set of running adapters, its value the time it last changed, as 0.32 writes it) and
`vllm:num_requests_running`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from lora_controller.simulator.config import FaultKnobs, PodConfig
from lora_controller.simulator.registry import LoraRegistry
from lora_controller.simulator.tokenizer import Tokenizer


@dataclass
class _InFlight:
    adapter: str | None
    started: float = field(default_factory=time.monotonic)
    active: bool = False


def go_float(value: float) -> str:
    """A sample value as the Prometheus text format writes it (`1.7958602355392084e+09`)."""
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


class Engine:
    """Requests in flight on one simulated server."""

    def __init__(self, config: PodConfig, faults: FaultKnobs, tokenizer: Tokenizer, registry: LoraRegistry) -> None:
        self.config = config
        self.faults = faults
        self.tokenizer = tokenizer
        self.registry = registry
        self._inflight: list[_InFlight] = []
        self._slot_change = asyncio.Condition()
        self._lora_series: dict[tuple[str, str], float] = {}

    def forget(self) -> None:
        """What a restart loses: requests in flight and the LoRA gauge's series."""
        self._inflight.clear()
        self._lora_series.clear()

    def _record_lora_info(self) -> None:
        names: list[str] = []
        for item in self._inflight:
            if item.adapter is not None and item.adapter not in names:
                names.append(item.adapter)
        joined = ",".join(names)
        key = (joined, joined)  # 0.32 builds both labels from the same set
        self._lora_series.pop(key, None)
        self._lora_series[key] = time.time()

    def _active_adapters(self) -> set[str]:
        return {i.adapter for i in self._inflight if i.adapter is not None and i.active}

    async def generate(
        self, adapter: str | None, prompts: list[str | list[int]], *, max_tokens: int, n: int
    ) -> list[str]:
        """`n` completions of `max_tokens` tokens per prompt, once the adapter holds a slot."""
        item = _InFlight(adapter)
        self._inflight.append(item)
        self._record_lora_info()
        try:
            if adapter is not None:
                async with self._slot_change:
                    await self._slot_change.wait_for(
                        lambda: adapter in self._active_adapters() or len(self._active_adapters()) < self.config.max_loras
                    )
                    item.active = True
            if self.faults.token_latency_ms > 0:
                await asyncio.sleep(self.faults.token_latency_ms * max_tokens / 1000)
            files = self.registry.adapters.get(adapter) if adapter else None
            seed_base = f"{self.config.model}|{files.path if files else ''}|{adapter or ''}"
            return [
                self.tokenizer.generate(seed_text=f"{seed_base}|{p}|{i}", count=max_tokens)
                for p in prompts
                for i in range(n)
            ]
        finally:
            if item in self._inflight:
                self._inflight.remove(item)
            self._record_lora_info()
            async with self._slot_change:
                self._slot_change.notify_all()

    def metrics_text(self) -> str:
        """The `/metrics` text: vLLM's LoRA info gauge and a few request gauges."""
        running = len(self._inflight)
        model = self.config.names[0]
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f'vllm:num_requests_running{{engine="0",model_name="{model}"}} {float(running)}',
        ]
        if self.config.enable_lora:
            lines += [
                "# HELP vllm:lora_requests_info Running stats on lora requests.",
                "# TYPE vllm:lora_requests_info gauge",
            ]
            for (running_names, waiting_names), stamp in self._lora_series.items():
                lines.append(
                    f'vllm:lora_requests_info{{max_lora="{self.config.max_loras}",'
                    f'running_lora_adapters="{running_names}",waiting_lora_adapters="{waiting_names}"}} '
                    f"{go_float(stamp)}"
                )
        return "\n".join(lines) + "\n"
