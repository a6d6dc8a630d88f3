"""Real LoRA adapter files for tests: the development environment's one writer, re-exported here for
the tests that import it from tests.support (see lora_controller/devenv/adapters.py)."""

from lora_controller.devenv.adapters import (
    DEFAULT_BASE,
    DEFAULT_TARGETS,
    adapter_config,
    adapter_files,
    adapter_weights,
    under,
    write_adapter,
    write_adapters,
)

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_TARGETS",
    "adapter_config",
    "adapter_files",
    "adapter_weights",
    "under",
    "write_adapter",
    "write_adapters",
]
