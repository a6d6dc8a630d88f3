"""The demo: a real local control plane with the LoraAdapter CRD and the samples applied.

Run through `make demo`. Everything it starts is stopped when it ends, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lora_controller.devenv.controlplane import REPO, ControlPlane


def _kubectl(cp: ControlPlane, *args: str) -> str:
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig))
    out = subprocess.run(["kubectl", *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout


def _say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the control plane running")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lora-demo-"))
    cp = ControlPlane(workdir / "kube")
    started = time.monotonic()
    try:
        _say("starting a local kube-apiserver + etcd")
        cp.up()
        assert cp.state is not None
        print(f"kube-apiserver {cp.state.apiserver_url} ready in {time.monotonic() - started:.1f}s")
        _say("installing the LoraAdapter CRD")
        print(_kubectl(cp, "apply", "-f", str(REPO / "crds")), end="")
        _kubectl(cp, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        _say("applying deploy/samples/")
        for _ in range(50):
            try:
                print(_kubectl(cp, "apply", "-f", str(REPO / "deploy" / "samples")), end="")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.2)  # the new resource type is not served yet
        _say("kubectl get loraadapters")
        print(_kubectl(cp, "get", "loraadapters", "-o", "wide"), end="")
        if args.keep:
            print(f"\nexport KUBECONFIG={cp.kubeconfig}   # stop with: hack/kubeenv down {cp.dir}")
            return 0
    finally:
        if not args.keep:
            cp.down()
            print(f"\nstopped everything ({time.monotonic() - started:.1f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
