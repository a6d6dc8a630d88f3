"""The development environment: a real local control plane, the harness that tests, benchmarks and
the demo share (simulated vLLM pods as Pods, the controller as a process, adapter files), the demo
and `lora-controller dev sim-pods`.

Not part of the wheel or the image (docs/decisions.md). `controlplane`, `kubectl` and `kubeenv` use
the standard library only, so `hack/kubeenv` runs them with any Python 3.11 before a virtualenv exists.
"""
