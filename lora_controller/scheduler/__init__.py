"""The LoRA scheduler: pure, deterministic, capacity-aware placement with priority and preemption."""
