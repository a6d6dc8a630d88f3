"""Everything on one machine: a local control plane with the CRDs, simulated pods, the controller.

`LocalCluster` starts a real kube-apiserver + etcd in a working folder, installs the repository's
CRDs, opens a client and one `SimulatedFleet`; `namespace()` gives a `Cluster` of simulated pods,
`start_controller()` a `ControllerProcess`. Leaving it stops all of that in reverse order and,
when it made its working folder itself (a temporary one), removes that folder with the control
plane's keys, unless asked to keep it. The
benchmarks and the demo run on it; the test suite shares one control plane per session instead
(tests/conftest.py) and builds its `Cluster`s on that.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lora_controller.devenv.cluster import Cluster, create_namespace
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import ControlPlane
from lora_controller.devenv.kubectl import install_crds
from lora_controller.kube.client import KubeClient
from lora_controller.simulator.fleet import SimulatedFleet
from lora_controller.simulator.pod import SimulatedPod


class LocalCluster:
    """A control plane, a client, a fleet of simulated pods and, once started, the controller."""

    def __init__(
        self, workdir: Path | None = None, *, keep: bool = False, pool_size: int = 64, timeout: float = 30
    ) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="lora-local-"))
        self._remove_workdir = workdir is None and not keep
        self.cp = ControlPlane(self.workdir / "kube")
        self.fleet = SimulatedFleet()
        self.clusters: dict[str, Cluster] = {}
        self.controller: ControllerProcess | None = None
        self.crds_applied = ""
        self._kube: KubeClient | None = None
        self._pool_size = pool_size
        self._timeout = timeout

    async def __aenter__(self) -> LocalCluster:
        try:
            await asyncio.to_thread(self.cp.up)
            self.crds_applied = await asyncio.to_thread(install_crds, self.cp)
            self._kube = await KubeClient.from_config(
                kubeconfig=str(self.cp.kubeconfig), timeout=self._timeout, pool_size=self._pool_size)
            await self.fleet.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the controller, the simulated pods, the client and the control plane."""
        if self.controller is not None:
            self.controller.stop()
        await self.fleet.stop()
        if self._kube is not None:
            await self._kube.close()
            self._kube = None
        await asyncio.to_thread(self.cp.down)
        if self._remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def kube(self) -> KubeClient:
        """The admin client (once entered)."""
        assert self._kube is not None, "use LocalCluster as an async context manager"
        return self._kube

    @property
    def sims(self) -> dict[tuple[str, str], SimulatedPod]:
        """Every simulated pod by (namespace, pod name)."""
        return {(ns, name): pod.sim for ns, c in self.clusters.items() for name, pod in c.pods.items()}

    async def namespace(self, name: str) -> Cluster:
        """Create namespace `name` (if new) and return its `Cluster`."""
        if name not in self.clusters:
            await create_namespace(self.kube, name)
            self.clusters[name] = Cluster(name, self.kube, self.fleet)
        return self.clusters[name]

    def start_controller(self, *args: str, **options: Any) -> ControllerProcess:
        """`lora-controller run` with `args`, logging to workdir/controller.log, store in workdir/store."""
        self.controller = ControllerProcess(
            self.cp, store=self.workdir / "store", log_path=self.workdir / "controller.log",
            extra=args, **options).start()
        return self.controller
