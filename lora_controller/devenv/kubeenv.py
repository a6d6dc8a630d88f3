"""`hack/kubeenv up|down|status DIR`: a local control plane someone can point kubectl at."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from lora_controller.devenv.controlplane import ControlPlane, ControlPlaneError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/kubeenv",
        description="Start, stop or inspect a local kube-apiserver + etcd (built from pinned Go modules).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd and kube-apiserver, write DIR/kubeconfig, wait for /readyz")
    up.add_argument("dir")
    up.add_argument("--apiserver-arg", action="append", default=[], metavar="FLAG",
                    help="an extra kube-apiserver flag (repeatable)")
    down = sub.add_parser("down", help="stop both processes by PID")
    down.add_argument("dir")
    status = sub.add_parser("status", help="print whether both run and the API server is ready")
    status.add_argument("dir")
    args = parser.parse_args(argv)

    cp = ControlPlane(args.dir)
    try:
        if args.command == "up":
            cp.up(extra_apiserver_args=args.apiserver_arg)
            assert cp.state is not None
            print(f"# kube-apiserver {cp.state.apiserver_url} ready; admin kubeconfig below,"
                  f" a user with no rights in {cp.user_kubeconfig}", file=sys.stderr)
            print(f"export KUBECONFIG={cp.kubeconfig}")
        elif args.command == "down":
            cp.down()
        else:
            st = cp.status()
            print(json.dumps(st, indent=2))
            return 0 if st.get("apiserver", {}).get("ready") else 1
    except ControlPlaneError as exc:
        print(f"kubeenv: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
