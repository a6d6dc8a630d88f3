"""Tests of the vLLM layer (client, serve-args parsing) and of the vLLM simulator."""
