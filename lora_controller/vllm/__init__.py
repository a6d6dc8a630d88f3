"""The vLLM pod API: an async client for the runtime LoRA endpoints and the pod LoRA limits."""
