"""Credentials the tests hand to the controller, so that every log can be searched for them.

A test that makes a credential (a router token, a vLLM API key, an HF token, S3 keys) registers it
with `credential()`; at the end of the run, tests/conftest.py searches every log file the run
wrote and every test's captured output for each registered value, and fails the run on a hit.
"""

from __future__ import annotations

KNOWN: set[str] = set()


def credential(value: str) -> str:
    """Register `value` as a credential (returned as is); short values are too common to search."""
    if len(value) >= 6:
        KNOWN.add(value)
    return value
