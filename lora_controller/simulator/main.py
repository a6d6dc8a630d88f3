"""Entry point of the `lora-vllm-sim` command (placeholder until the simulator lands)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lora-vllm-sim", description="A vLLM runtime-LoRA simulator.")
    parser.parse_args(argv)
