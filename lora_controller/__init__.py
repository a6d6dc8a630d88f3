"""lora-controller: places, loads and keeps LoRA adapters on vLLM pods, from LoraAdapter resources."""

__version__ = "0.1.0"
