"""Tests of the kube layer: work queue, rate limiters, runner, informers, leader election."""
