"""Local development environment: a real kube-apiserver and etcd on loopback, for tests and the demo.

Standard library only, so hack/kubeenv runs it with any Python 3.11.
"""
