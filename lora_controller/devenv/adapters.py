"""Real LoRA adapter folders for tests, benchmarks, the demo and `lora-controller dev sim-pods`.

An adapter is what PEFT writes: an `adapter_config.json` and an `adapter_model.safetensors` of small
random tensors (numpy, no torch), so every layer (sources, the controller's checks, the simulator's
file checks) reads what it would in production. `write_adapters` writes many at once; with
`shared_weights` every folder's weights file is a hard link to one file, which writes thousands of
adapters in a second and still reads as real files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save

DEFAULT_BASE = "meta-llama/Llama-2-7b-hf"
DEFAULT_TARGETS = ("q_proj", "v_proj")
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


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
        "target_modules": list(target_modules) if not isinstance(target_modules, str) else target_modules,
        "base_model_name_or_path": base_model,
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    config.update(extra)
    return config


def adapter_weights(
    *, r: int = 8, hidden: int = 32, layers: int = 2, target_modules: tuple[str, ...] = DEFAULT_TARGETS, seed: int = 0
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
    *,
    r: int = 8,
    base_model: str | None = DEFAULT_BASE,
    seed: int = 0,
    hidden: int = 32,
    config: dict[str, Any] | None = None,
    **config_extra: Any,
) -> dict[str, bytes]:
    """{file name: bytes} of one adapter folder."""
    cfg = config if config is not None else adapter_config(r=r, base_model=base_model, **config_extra)
    return {
        CONFIG_FILE: json.dumps(cfg, indent=2).encode(),
        WEIGHTS_FILE: adapter_weights(r=r, seed=seed, hidden=hidden),
    }


def write_adapter(folder: Path, **kwargs: Any) -> dict[str, bytes]:
    """Write an adapter folder (see adapter_files for kwargs); returns what was written."""
    files = adapter_files(**kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, target)


def write_adapters(
    root: Path, names: list[str], *, base_model: str = "tiny-llama", shared_weights: bool = False, **kwargs: Any
) -> Path:
    """One adapter folder per name under `root`, for `base_model`; returns `root`.

    Each adapter has weights of its own (seed = its index) unless `shared_weights`, where they all
    link to one `root/.weights.safetensors`: the fast path for thousands of adapters.
    """
    root.mkdir(parents=True, exist_ok=True)
    if not shared_weights:
        for i, name in enumerate(names):
            write_adapter(root / name, base_model=base_model, seed=i, **kwargs)
        return root
    files = adapter_files(base_model=base_model, **kwargs)
    shared = root / ".weights.safetensors"
    shared.write_bytes(files[WEIGHTS_FILE])
    for name in names:
        folder = root / name
        folder.mkdir(exist_ok=True)
        (folder / CONFIG_FILE).write_bytes(files[CONFIG_FILE])
        target = folder / WEIGHTS_FILE
        if not target.exists():
            _link_or_copy(shared, target)
    return root


def under(prefix: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """`files` with their names put below `prefix` (a folder path, '' for none)."""
    prefix = prefix.strip("/")
    return {(f"{prefix}/{k}" if prefix else k): v for k, v in files.items()}
