"""Unit tests of the kube layer that need no API server (work queue, rate limiters, runner)."""
