"""Reading and checking an adapter's files the way vLLM's worker does when it is asked to load one.

Follows `WorkerLoRAManager._load_adapter`: resolve the path (`get_adapter_absolute_path`), read
`adapter_config.json` (`PEFTHelper.from_local_dir`/`from_dict`), reject unsupported features and a
rank above `--max-lora-rank` (`validate_legal`), then find the weights (`LoRAModel.
from_local_checkpoint`: safetensors header read for real, `.bin`/`.pt` accepted by name) and check
every tensor name. A missing config is vLLM's "No adapter found" (404); anything else raised is
the message vLLM wraps in "Call to add_lora method failed" (500). Blocking file I/O: run it in a thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from safetensors import safe_open

# The modules vLLM's Llama-family models accept LoRA weights for (packed qkv/gate_up expanded).
LLAMA_LORA_MODULES = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens", "lm_head"}
)
_SUPPORTED_INITS = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")
_REQUIRED = ("r", "lora_alpha", "target_modules")
_KNOWN_FIELDS = frozenset(
    {
        "r", "lora_alpha", "target_modules", "bias", "modules_to_save", "use_rslora", "use_dora", "lora_bias",
        "init_lora_weights", "alora_invocation_tokens", "layer_replication", "use_bdlora", "use_qalora",
        "rank_pattern", "alpha_pattern", "vllm_lora_scaling_factor", "vllm_max_position_embeddings",
    }
)


class AdapterNotFound(Exception):
    """vLLM's LoRAAdapterNotFoundError (a FileNotFoundError while reading the adapter)."""

    def __init__(self, lora_name: str, lora_path: str) -> None:
        super().__init__(f"Loading lora {lora_name} failed: No adapter found for {lora_path}")


class AdapterLoadError(Exception):
    """Any other failure of the worker's load; `str()` is the worker's exception text."""


@dataclass(frozen=True, slots=True)
class AdapterFiles:
    """What the worker learnt from a valid adapter."""

    path: str
    rank: int
    lora_alpha: float
    target_modules: tuple[str, ...]
    base_model_name_or_path: str | None
    tensor_names: tuple[str, ...]
    weights_bytes: int


def resolve_adapter_path(lora_path: str) -> str:
    """`get_adapter_absolute_path` without a hub download (the simulator is offline, like the recording)."""
    if os.path.isabs(lora_path):
        return lora_path
    if lora_path.startswith("~"):
        return os.path.expanduser(lora_path)
    if os.path.exists(lora_path):
        return os.path.abspath(lora_path)
    return lora_path


def _type_name(value: Any) -> str:
    return "NoneType" if value is None else type(value).__name__


def _item_assignment_error(config: Any) -> str:
    if isinstance(config, list):
        return "list indices must be integers or slices, not str"
    return f"'{_type_name(config)}' object does not support item assignment"


def _compare_error(op: str, left: Any, right: Any) -> str:
    return f"'{op}' not supported between instances of '{_type_name(left)}' and '{_type_name(right)}'"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _feature_errors(cfg: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    modules_to_save = cfg.get("modules_to_save")
    if modules_to_save:
        unsupported = [m for m in modules_to_save if m not in ["classifier", "score"]]
        if unsupported:
            errors.append(
                "vLLM only supports modules_to_save being either None "
                'or ["classifier", "score"] for classification models. '
                f"Unsupported modules_to_save: {unsupported}"
            )
    if cfg.get("use_dora"):
        errors.append("vLLM does not yet support DoRA.")
    if cfg.get("lora_bias"):
        errors.append("vLLM does not support LoRA bias (lora_bias).")
    init = cfg.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in _SUPPORTED_INITS:
        errors.append(
            f"vLLM does not support init_lora_weights={init!r}."
            " Inits such as PiSSA, OLoRA, CorDA and LoftQ modify the base model"
            " weights when PEFT loads the adapter. Convert it to a regular LoRA"
            " adapter with PEFT's path_initial_model_for_weight_conversion, or"
            " set init_lora_weights to true if the served base model already"
            " contains the modified weights."
        )
    if cfg.get("alora_invocation_tokens"):
        errors.append("vLLM does not support Activated LoRA (aLoRA).")
    if cfg.get("layer_replication"):
        errors.append("vLLM does not support layer_replication.")
    if cfg.get("use_bdlora"):
        errors.append("vLLM does not support block-diagonal LoRA (BD-LoRA).")
    if cfg.get("use_qalora"):
        errors.append("vLLM does not support QALoRA.")
    return errors


def check_config(config: Any, *, max_lora_rank: int) -> dict[str, Any]:
    """`PEFTHelper.from_dict` + `validate_legal` on a parsed adapter_config.json; raise as vLLM would."""
    if not isinstance(config, dict):
        raise AdapterLoadError(_item_assignment_error(config))
    missing = [f for f in _REQUIRED if f not in config]
    if missing:
        shown = "{" + ", ".join(repr(m) for m in missing) + "}"
        raise AdapterLoadError(f"Missing required configuration fields: {shown}")
    cfg = {k: v for k, v in config.items() if k in _KNOWN_FIELDS}
    r = cfg["r"]
    if not _is_number(r):
        raise AdapterLoadError(_compare_error("<=", r, 0))
    if r <= 0:
        raise AdapterLoadError(f"LoRA rank `r` must be a positive integer, got {r}.")
    rank_pattern = cfg.get("rank_pattern") or {}
    alpha = cfg["lora_alpha"]
    if not _is_number(alpha):
        raise AdapterLoadError(f"unsupported operand type(s) for /: '{_type_name(alpha)}' and '{_type_name(r)}'")
    errors = _feature_errors(cfg)
    ranks = [r, *(rank_pattern.values() if isinstance(rank_pattern, dict) else [])]
    for value in ranks:
        if not _is_number(value):
            raise AdapterLoadError(_compare_error(">", value, r))
    max_rank = max(ranks)
    if max_rank > max_lora_rank:
        errors.append(f"LoRA rank {max_rank} is greater than max_lora_rank {max_lora_rank}.")
    if cfg.get("bias", "none") != "none":
        errors.append("Adapter bias is not supported.")
    if errors:
        raise AdapterLoadError(" ".join(errors))
    return cfg


def _base_embedding(name: str) -> bool:
    return name.endswith((".embed_tokens.base_layer.weight", ".lm_head.base_layer.weight"))


def lora_module_of(tensor_name: str) -> str:
    """`parse_fine_tuned_lora_name` without a weights mapper: the module a LoRA tensor belongs to."""
    name = tensor_name
    start = 2 if name.startswith("base_model.model.") else 0
    parts = name.split(".")
    if parts[-1] == "weight" and len(parts) >= 2 and parts[-2] in ("lora_A", "lora_B"):
        return ".".join(parts[start:-2])
    if parts[-1] in ("lora_embedding_A", "lora_embedding_B"):
        return ".".join(parts[start:-1])
    raise AdapterLoadError(f"{name} is unsupported LoRA weight")


def check_tensor_names(names: Iterable[str], *, lora_dir: str, expected_modules: frozenset[str] | None) -> None:
    """`check_unexpected_modules`: every LoRA tensor must map to a module the model supports."""
    unexpected: list[str] = []
    for name in names:
        if _base_embedding(name) or "base_layer" in name:
            continue
        module = lora_module_of(name)
        if expected_modules is None:
            continue
        if ".experts" in module:
            suffix = module[module.find(".experts") + 1 :]
            if suffix not in expected_modules:
                unexpected.append(module)
        elif module.rsplit(".", 1)[-1] not in expected_modules:
            unexpected.append(module)
    if unexpected:
        shown = "{" + ", ".join(repr(m) for m in sorted(expected_modules or ())) + "}"
        raise AdapterLoadError(
            f"While loading {lora_dir}, expected target modules in {shown} but received {unexpected}."
            " Please verify that the loaded LoRA module is correct"
        )




def read_adapter(
    lora_name: str,
    lora_path: str,
    *,
    max_lora_rank: int,
    expected_modules: frozenset[str] | None = LLAMA_LORA_MODULES,
) -> AdapterFiles:
    """Read and check the adapter at `lora_path` as vLLM's worker does. Blocking."""
    path = resolve_adapter_path(lora_path)
    config_path = os.path.join(path, "adapter_config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise AdapterNotFound(lora_name, lora_path) from None
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError, IsADirectory, ...
        raise AdapterLoadError(str(exc)) from None
    cfg = check_config(config, max_lora_rank=max_lora_rank)
    safetensors_path = os.path.join(path, "adapter_model.safetensors")
    names: list[str] = []
    size = 0
    if os.path.isfile(safetensors_path):
        try:
            with safe_open(safetensors_path, framework="numpy") as handle:
                names = list(handle.keys())
            size = os.path.getsize(safetensors_path)
        except Exception as exc:  # safetensors_rust.SafetensorError and OSError: the worker's text
            raise AdapterLoadError(str(exc)) from None
        check_tensor_names(names, lora_dir=path, expected_modules=expected_modules)
    else:
        for candidate in ("adapter_model.bin", "adapter_model.pt"):
            full = os.path.join(path, candidate)
            if os.path.isfile(full):
                size = os.path.getsize(full)
                break
        else:
            raise AdapterLoadError(f"{path} doesn't contain tensors")
    base = config.get("base_model_name_or_path")
    targets = cfg.get("target_modules")
    return AdapterFiles(
        path=path,
        rank=int(cfg["r"]),
        lora_alpha=float(cfg["lora_alpha"]),
        target_modules=tuple(targets) if isinstance(targets, list) else ((targets,) if isinstance(targets, str) else ()),
        base_model_name_or_path=base if isinstance(base, str) else None,
        tensor_names=tuple(names),
        weights_bytes=size,
    )
