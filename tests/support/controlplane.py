"""Test helpers around the real local control plane: kubectl and CRD installation, re-exported from
the development environment (lora_controller/devenv/kubectl.py) for the tests that import them here."""

from lora_controller.devenv.kubectl import CRDS, KubectlError, install_crds, kubectl, kubectl_json

__all__ = ["CRDS", "KubectlError", "install_crds", "kubectl", "kubectl_json"]
