"""Entry point of the `lora-vllm-sim` command: one process serving one or many simulated vLLM pods.

Prints one `READY http://host:port` line per pod once all listen, so a script or a benchmark can
wait for them; runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

import structlog

from lora_controller.simulator.config import config_from_args
from lora_controller.simulator.fleet import SimulatedFleet
from lora_controller.simulator.registry import SimulatorStartError

log = structlog.get_logger(__name__)


async def serve(argv: Sequence[str]) -> int:
    """Start the pods described by `argv` and serve until a stop signal."""
    config, listen, ignored = config_from_args(argv)
    if ignored:
        log.info("sim_ignored_vllm_flags", flags=ignored)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with SimulatedFleet() as fleet:
        try:
            for host, port in listen:
                await fleet.add_pod(config, host=host, port=port)
        except SimulatorStartError as exc:
            print(f"error: a --lora-modules adapter failed to load: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: cannot listen: {exc}", file=sys.stderr)
            return 1
        for pod in fleet.pods:
            print(f"READY {pod.url}", flush=True)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """`lora-vllm-sim --model NAME [--port P ...] [vLLM flags] [fault knobs]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
