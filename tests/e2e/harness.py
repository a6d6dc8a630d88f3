"""End-to-end harness: simulated vLLM pods registered as real Pods, and the controller as a process.

One harness serves the tests, the benchmarks and the demo: it lives in lora_controller/devenv
(`cluster`, `controller_process`, `adapters`, `waiting`); this module re-exports it for the tests
that import it from here.
"""

from lora_controller.devenv.adapters import write_adapters
from lora_controller.devenv.cluster import Cluster, SimPod, local_spec
from lora_controller.devenv.controller_process import ControllerProcess
from lora_controller.devenv.controlplane import REPO
from lora_controller.devenv.waiting import eventually

__all__ = ["REPO", "Cluster", "ControllerProcess", "SimPod", "eventually", "local_spec", "write_adapters"]
