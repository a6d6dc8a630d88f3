"""The controller and the vLLM client against real vLLM servers (CPU build), as Pods of a real API server."""
