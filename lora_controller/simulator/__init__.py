"""A vLLM simulator that answers the runtime LoRA API as vLLM does, for tests, benchmarks and the demo."""
