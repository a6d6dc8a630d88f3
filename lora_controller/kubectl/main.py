"""`kubectl lora`: status, why and plan, with kubectl's conventions.

    kubectl lora status [NAME] [-n NS | -A] [-o wide|json]
    kubectl lora why ADAPTER [-n NS] [-o json]
    kubectl lora plan -f FILE [-n NS] [-o json] [--validate=false]

The context and namespace come from the kubeconfig (`--kubeconfig`, `--context`, `-n`), the
controller from its Service or `--controller-url`. Exit status: 0 done, 1 something failed (one
line on stderr says what), 2 a usage mistake.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kubectl import output
from lora_controller.kubectl.controller import (
    Controller,
    ControllerError,
    Direct,
    Proxied,
    find_service,
)
from lora_controller.kubectl.kubeconfig import KubeconfigError, KubeSettings, settings
from lora_controller.kubectl.planfile import PlanFileError, read_plan_files, validate

PAGE = 1000
JSON = dict[str, Any]


def _common() -> argparse.ArgumentParser:
    """Flags every command takes, before or after its name (kubectl's habit)."""
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    p.add_argument("-n", "--namespace", default=s, help="namespace (default: the context's)")
    p.add_argument("--context", default=s, help="kubeconfig context (default: the current one)")
    p.add_argument("--kubeconfig", default=s, help="kubeconfig file (default: $KUBECONFIG, "
                   "~/.kube/config)")
    p.add_argument("--controller-url", default=s, help="the controller's URL, e.g. "
                   "http://localhost:8080 after kubectl port-forward (default: its Service, "
                   "through the API server; $KUBECTL_LORA_CONTROLLER_URL)")
    p.add_argument("--controller-service", default=s, metavar="NAMESPACE/NAME",
                   help="the controller's Service (default: the one labelled "
                   "app.kubernetes.io/name=lora-controller)")
    p.add_argument("--token-file", default=s, help="file holding the controller's router token "
                   "(its --router-token-file); $LORA_ROUTER_TOKEN holds the token itself")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(prog="kubectl lora", parents=[common],
                                description="LoRA adapter placement, from lora-controller.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    st = sub.add_parser("status", parents=[common], help="per adapter: where it is confirmed "
                        "and why not elsewhere")
    st.add_argument("name", nargs="?", metavar="NAME", help="a LoraAdapter (default: all)")
    st.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    st.add_argument("-o", "--output", choices=["wide", "json"], help="output format")
    wh = sub.add_parser("why", parents=[common], help="why an adapter is (not) placed, in "
                        "words, with the eligible pods and their free capacity")
    wh.add_argument("adapter", metavar="ADAPTER", help="the adapter's name (vLLM's lora_name)")
    wh.add_argument("-o", "--output", choices=["json"], help="output format")
    pl = sub.add_parser("plan", parents=[common], help="dry run: what applying FILE would load, "
                        "unload and preempt per pod; nothing is applied")
    pl.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                    help="YAML or JSON with LoraAdapters ('-': standard input); may repeat")
    pl.add_argument("-o", "--output", choices=["json"], help="output format")
    pl.add_argument("--validate", default="true", choices=["true", "false"],
                    help="check the LoraAdapters with the API server first (server-side dry "
                    "run, strict fields); default true")
    return p


def _opt(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


def _token(args: argparse.Namespace) -> str | None:
    path = _opt(args, "token_file")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise ControllerError(f"cannot read --token-file {path}: {exc.strerror}") from None
    return os.environ.get("LORA_ROUTER_TOKEN") or None


async def _kube(kube: KubeSettings) -> KubeClient:
    try:
        return await KubeClient.from_config(kubeconfig=kube.path, context=kube.context, timeout=30)
    except Exception as exc:  # the kubeconfig library raises many kinds
        raise KubeconfigError(f"cannot use the kubeconfig: {exc}") from None


async def _connect(args: argparse.Namespace, kube: KubeSettings | None) -> Controller:
    url = _opt(args, "controller_url") or os.environ.get("KUBECTL_LORA_CONTROLLER_URL")
    token = _token(args)
    if url:
        return Direct(url, token, aiohttp.ClientSession())
    if kube is None:
        raise KubeconfigError("no kubeconfig to find the controller with; give --controller-url")
    client = await _kube(kube)
    try:
        ns, name, port = await find_service(client, namespace=kube.namespace,
                                            explicit=_opt(args, "controller_service"))
    except BaseException:
        await client.close()
        raise
    return Proxied(client, ns, name, port, token)


async def _rows(ctl: Controller, query: dict[str, str | int]) -> list[JSON]:
    rows: list[JSON] = []
    while True:
        page = await ctl.call("GET", "/v1/fleet/adapters", {**query, "offset": len(rows),
                                                             "limit": PAGE})
        rows += page["adapters"]
        if not page["adapters"] or len(rows) >= page["total"]:
            return rows


async def status(ctl: Controller, args: argparse.Namespace, namespace: str | None) -> str:
    query: dict[str, str | int] = {"namespace": namespace} if namespace else {}
    if args.name:
        query["loraAdapter"] = args.name
    rows = await _rows(ctl, query)
    fleet = await ctl.call("GET", "/v1/fleet", {"namespace": namespace} if namespace else None)
    crs = [c for c in fleet["loraAdapters"] if args.name in (None, c["name"])]
    if args.name and not crs:
        raise ControllerError(f'loraadapters "{args.name}" not found in namespace {namespace}')
    if args.output == "json":
        return json.dumps({"loraAdapters": crs, "adapters": rows}, indent=2)
    return output.status(rows, crs, wide=args.output == "wide", all_namespaces=namespace is None)


async def why(ctl: Controller, args: argparse.Namespace, namespace: str) -> str:
    answer = await ctl.call("GET", f"/v1/adapters/{args.adapter}/why", {"namespace": namespace})
    return json.dumps(answer, indent=2) if args.output == "json" else output.why(answer)


async def plan(ctl: Controller, args: argparse.Namespace, kube: KubeSettings | None,
               namespace: str) -> str:
    items = read_plan_files(args.filename, namespace)
    if args.validate == "true":
        if kube is None:
            raise KubeconfigError("--validate needs the API server; give a kubeconfig or "
                                  "--validate=false")
        client = await _kube(kube)
        try:
            await validate(client, items)
        finally:
            await client.close()
    answer = await ctl.call("POST", "/v1/plan", None, {"apiVersion": "v1", "kind": "List",
                                                       "items": items})
    return json.dumps(answer, indent=2) if args.output == "json" else output.plan(answer)


async def run(args: argparse.Namespace) -> str:
    try:
        kube: KubeSettings | None = settings(
            kubeconfig=_opt(args, "kubeconfig"), context=_opt(args, "context"),
            namespace=_opt(args, "namespace"))
    except KubeconfigError:
        # A URL needs no kubeconfig, unless one was asked for by name.
        url = _opt(args, "controller_url") or os.environ.get("KUBECTL_LORA_CONTROLLER_URL")
        if not url or _opt(args, "context") or _opt(args, "kubeconfig"):
            raise
        kube = None
    namespace = kube.namespace if kube else (_opt(args, "namespace") or "default")
    ctl = await _connect(args, kube)
    try:
        if args.command == "status":
            return await status(ctl, args, None if args.all_namespaces else namespace)
        if args.command == "why":
            return await why(ctl, args, namespace)
        return await plan(ctl, args, kube, namespace)
    finally:
        await ctl.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = asyncio.run(run(args))
    except (ControllerError, KubeconfigError, PlanFileError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except ApiError as exc:
        sys.stderr.write(f"error: the API server answered {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
