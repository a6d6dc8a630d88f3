"""A vLLM simulator that answers the runtime LoRA API as vLLM does, for tests, benchmarks and the demo."""

from lora_controller.simulator.config import FaultKnobs, PodConfig
from lora_controller.simulator.fleet import SimulatedFleet
from lora_controller.simulator.pod import SimulatedPod
from lora_controller.simulator.registry import LoadEvent, RegisteredAdapter, SimulatorStartError

__all__ = [
    "FaultKnobs",
    "LoadEvent",
    "PodConfig",
    "RegisteredAdapter",
    "SimulatedFleet",
    "SimulatedPod",
    "SimulatorStartError",
]
