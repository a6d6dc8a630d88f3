"""Kubernetes machinery: client, reflector, informer, store, work queue, leader election, status, events.

The only layer that imports kubernetes_asyncio.
"""
