"""`lora-controller dev ...` and `lora-vllm-sim`: development tools that only a development install has.

The simulator (`lora_controller.simulator`) and the dev environment (`lora_controller.devenv`) stay
out of the production wheel and image (docs/decisions.md); these entry points are in both, so that
where the tools are absent a user gets one line saying so instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

DEV_MODULES = ("lora_controller.devenv", "lora_controller.simulator", "numpy", "safetensors")
NOT_INSTALLED = (
    "{prog}: the development tools (vLLM simulator, dev environment) are not in this installation "
    "(a production install carries the controller only); install from a checkout of the repository: "
    "pip install -e '.[test]'"
)


def _missing_dev_module(exc: ModuleNotFoundError) -> bool:
    name = exc.name or ""
    return any(name == m or name.startswith(m + ".") for m in DEV_MODULES)


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is below 0")
    return value


def add_dev_arguments(parser: argparse.ArgumentParser) -> None:
    """The `dev` subcommands and their flags."""
    sub = parser.add_subparsers(dest="dev_command", metavar="DEV_COMMAND", required=True)
    sim = sub.add_parser(
        "sim-pods", help="start simulated vLLM pods, register them as Pods on the current kubeconfig, write sample adapters",
        description="Start COUNT vLLM simulators on loopback ports, register each as a Ready Pod in NAMESPACE "
        "(of --kubeconfig, $KUBECONFIG or ~/.kube/config), write sample adapters for a local LoraAdapter, "
        "print what was created, and run until Ctrl-C, which deletes the Pods. For a control plane without "
        "kubelets (hack/kubeenv) and a controller on the same machine.",
    )
    sim.set_defaults(dev_parser=sim)
    sim.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    sim.add_argument("--namespace", default="lora-sim", help="namespace of the Pods, created if missing (default: %(default)s)")
    sim.add_argument("--count", type=_at_least(1), default=3, help="how many simulated vLLM pods (default: %(default)s)")
    sim.add_argument("--model", default="tiny-llama", help="the base model the pods serve (default: %(default)s)")
    sim.add_argument("--prefix", default="sim-vllm", help="Pod names are PREFIX-0, PREFIX-1, ... (default: %(default)s)")
    sim.add_argument("--adapters-dir", type=Path, default=Path("sim-adapters"),
                     help="where to write the sample adapters (default: ./%(default)s)")
    sim.add_argument("--adapters", type=_at_least(0), default=3, help="how many sample adapters, 0 for none (default: %(default)s)")
    sim.add_argument("--max-loras", type=_at_least(1), default=2, help="vLLM --max-loras of each pod (default: %(default)s)")
    sim.add_argument("--max-cpu-loras", type=_at_least(1), default=4, help="vLLM --max-cpu-loras of each pod (default: %(default)s)")
    sim.add_argument("--load-latency-ms", type=_milliseconds, default=0.0, help="simulated time of each adapter load (default: %(default)s)")


def run_dev(args: argparse.Namespace) -> int:
    """Run `lora-controller dev sim-pods` (the only dev command); the exit status."""
    if args.max_cpu_loras < args.max_loras:
        args.dev_parser.error("--max-cpu-loras must be at least --max-loras")
    try:
        from lora_controller.devenv.sim_pods_command import (
            SimPodsRequest,
            resolve_kubeconfig,
            serve_sim_pods,
        )
    except ModuleNotFoundError as exc:
        if not _missing_dev_module(exc):
            raise
        print(NOT_INSTALLED.format(prog="lora-controller dev"), file=sys.stderr)
        return 1
    try:
        kubeconfig = resolve_kubeconfig(args.kubeconfig)
    except ValueError as exc:
        print(f"lora-controller dev sim-pods: {exc}", file=sys.stderr)
        return 2
    request = SimPodsRequest(
        namespace=args.namespace, count=args.count, model=args.model, prefix=args.prefix,
        adapters_dir=args.adapters_dir if args.adapters else None, adapters=args.adapters,
        max_loras=args.max_loras, max_cpu_loras=args.max_cpu_loras, load_latency_ms=args.load_latency_ms,
    )
    try:
        return asyncio.run(serve_sim_pods(request, kubeconfig=kubeconfig))
    except Exception as exc:  # a user's setup problem (unreachable API server, no rights): one line
        print(f"lora-controller dev sim-pods: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def vllm_sim(argv: Sequence[str] | None = None) -> None:
    """The `lora-vllm-sim` command: the simulator's own entry point, or one line where it is absent."""
    try:
        from lora_controller.simulator.main import main
    except ModuleNotFoundError as exc:
        if not _missing_dev_module(exc):
            raise
        print(NOT_INSTALLED.format(prog="lora-vllm-sim"), file=sys.stderr)
        sys.exit(1)
    main(argv)
