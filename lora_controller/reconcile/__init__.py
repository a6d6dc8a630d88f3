"""Reconciliation: pure planning of load/unload actions and the executor that carries them out."""
