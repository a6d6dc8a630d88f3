"""Entry point of the `lora-controller` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from lora_controller import __version__
from lora_controller.cli.flags import OneLineErrorParser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="lora-controller",
        description="Places, loads and keeps LoRA adapters on vLLM pods, from LoraAdapter resources.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    from lora_controller.cli.flags import add_run_arguments

    run = sub.add_parser(
        "run", help="run the controller (router API, metrics, health on --listen)",
        description="Run the controller. Every flag can also be set with the environment variable "
        "LORA_CONTROLLER_<FLAG> (upper case, '-' as '_').",
    )
    add_run_arguments(run)
    sub.add_parser("crd", help="print the LoraAdapter CustomResourceDefinition (YAML)")
    from lora_controller.cli.dev import add_dev_arguments

    add_dev_arguments(sub.add_parser(
        "dev", help="development tools (a development install only): simulated vLLM pods to try the controller",
        description="Development tools; present in a development install (pip install -e '.[test]'), "
        "not in the production wheel or image."))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "crd":
        from lora_controller.api.crd import render_crd_yaml

        sys.stdout.write(render_crd_yaml())
        return
    if args.command == "dev":
        from lora_controller.cli.dev import run_dev

        sys.exit(run_dev(args))
    if args.command == "run":
        from lora_controller.cli.logging import configure_logging
        from lora_controller.cli.run import run

        configure_logging(fmt=args.log_format, level=args.log_level)
        sys.exit(asyncio.run(run(args)))
    parser.print_help()
