"""Real LoRA adapter files for tests: an adapter_config.json and a safetensors file of small random
tensors (numpy, no torch), shaped as PEFT writes them, so every layer reads what it would in
production."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save

DEFAULT_BASE = "meta-llama/Llama-2-7b-hf"
DEFAULT_TARGETS = ("q_proj", "v_proj")


def adapter_config(
    *,
    r: int = 8,
    lora_alpha: float = 16,
    target_modules: tuple[str, ...] | list[str] | str = DEFAULT_TARGETS,
    base_model: str | None = DEFAULT_BASE,
    **extra: Any,
) -> dict[str, Any]:
    """A PEFT LoRA adapter_config.json as a dict."""
    config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": lora_alpha,
        "lora_dropout": 0.05,
        "bias": "none",
        "target_modules": list(target_modules) if not isinstance(target_modules, str)
        else target_modules,
        "base_model_name_or_path": base_model,
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    config.update(extra)
    return config


def adapter_weights(
    *, r: int = 8, hidden: int = 32, layers: int = 2,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS, seed: int = 0,
) -> bytes:
    """adapter_model.safetensors bytes: lora_A (r x hidden) and lora_B (hidden x r) per module."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for layer in range(layers):
        for module in target_modules:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((r, hidden)).astype(np.float16)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((hidden, r)).astype(np.float16)
    data: bytes = save(tensors, metadata={"format": "pt"})
    return data


def adapter_files(
    *, r: int = 8, base_model: str | None = DEFAULT_BASE, seed: int = 0, hidden: int = 32,
    config: dict[str, Any] | None = None, **config_extra: Any,
) -> dict[str, bytes]:
    """{file name: bytes} of one adapter folder."""
    cfg = config if config is not None else adapter_config(r=r, base_model=base_model,
                                                           **config_extra)
    return {
        "adapter_config.json": json.dumps(cfg, indent=2).encode(),
        "adapter_model.safetensors": adapter_weights(r=r, seed=seed, hidden=hidden),
    }


def write_adapter(folder: Path, **kwargs: Any) -> dict[str, bytes]:
    """Write an adapter folder (see adapter_files for kwargs); returns what was written."""
    files = adapter_files(**kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def under(prefix: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """`files` with their names put below `prefix` (a folder path, '' for none)."""
    prefix = prefix.strip("/")
    return {(f"{prefix}/{k}" if prefix else k): v for k, v in files.items()}
