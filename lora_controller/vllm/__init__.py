"""The vLLM pod API: an async client for the runtime LoRA endpoints and the pod LoRA limits."""

from lora_controller.vllm.client import VllmClient, create_session
from lora_controller.vllm.endpoint import Endpoint
from lora_controller.vllm.errors import (
    AdapterInvalid,
    NameConflict,
    PodResponseInvalid,
    RequestRejected,
    RuntimeUpdatesDisabled,
    TransientError,
    Unauthorized,
    VllmError,
)
from lora_controller.vllm.models import (
    LoadOutcome,
    LoadResult,
    LoraRequestsInfo,
    ModelEntry,
    ModelList,
    UnloadOutcome,
    UnloadResult,
)
from lora_controller.vllm.serve_args import (
    LoraModule,
    ServeArgsError,
    VllmServeConfig,
    parse_serve_args,
)

__all__ = [
    "AdapterInvalid",
    "Endpoint",
    "LoadOutcome",
    "LoadResult",
    "LoraModule",
    "LoraRequestsInfo",
    "ModelEntry",
    "ModelList",
    "NameConflict",
    "PodResponseInvalid",
    "RequestRejected",
    "RuntimeUpdatesDisabled",
    "ServeArgsError",
    "TransientError",
    "Unauthorized",
    "UnloadOutcome",
    "UnloadResult",
    "VllmClient",
    "VllmError",
    "VllmServeConfig",
    "create_session",
    "parse_serve_args",
]
