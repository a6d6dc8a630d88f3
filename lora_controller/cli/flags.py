"""The flags of `lora-controller run`: their types, ranges, defaults and environment variables.

Every flag has a matching environment variable, `LORA_CONTROLLER_<FLAG>` (upper case, `-` as `_`),
used when the flag is not given. Defaults are strings on purpose: argparse converts a string
default with the flag's `type`, so a bad environment value is refused like a bad flag. Every
number has a range, and a value out of it is a usage error: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import NoReturn

ENV_PREFIX = "LORA_CONTROLLER_"


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line that points to --help, not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _env(name: str, default: str | None = None) -> str | None:
    """The flag's environment variable; an empty value counts as unset."""
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_")) or default


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def count(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number from {low} to {high}")
        return value

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds from `low` to `high` (nan and inf refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number of seconds from {low:g} to {high:g}")
        return value

    return parse


def split_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be empty for all interfaces, or an IPv6 address in brackets)."""
    host, sep, port_text = text.strip().rpartition(":")
    port = int(port_text) if port_text.isdigit() else -1
    if not sep or not 1 <= port <= 65535 or any(c.isspace() for c in host):
        raise ValueError(f"{text!r} is not HOST:PORT with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", port


def listen_address(text: str) -> str:
    """An argparse type: HOST:PORT, checked, kept as given."""
    try:
        split_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--kubeconfig", default=_env("kubeconfig") or os.environ.get("KUBECONFIG"),
      help="kubeconfig file (default: $KUBECONFIG, else the in-cluster service account)")
    a("--namespace", action="append", dest="namespaces",
      default=[n for n in (_env("namespace") or "").split(",") if n] or None,
      help="watch only this namespace (repeatable; default: all namespaces)")
    a("--adapter-store", default=_env("adapter_store", "/var/lib/lora-adapters"),
      help="folder where HuggingFace/S3 adapters are staged; the vLLM pods mount it at the same path")
    a("--listen", type=listen_address, default=_env("listen", "0.0.0.0:8080"),
      help="HOST:PORT of the router API, /metrics, /healthz and /readyz")
    a("--leader-elect", action=argparse.BooleanOptionalAction,
      default=_env_bool("leader_elect", True), help="elect one active replica through a Lease")
    a("--lease-name", default=_env("lease_name", "lora-controller"))
    a("--lease-namespace", default=_env("lease_namespace") or os.environ.get("POD_NAMESPACE") or "default")
    a("--lease-duration", type=seconds(1, 3600), default=_env("lease_duration", "15"),
      help="seconds a leader's Lease is valid without renewal")
    a("--renew-deadline", type=seconds(0.5, 3600), default=_env("renew_deadline", "10"),
      help="seconds the leader keeps trying to renew before it stops acting")
    a("--retry-period", type=seconds(0.1, 600), default=_env("retry_period", "2"),
      help="seconds between leader-election attempts")
    a("--workers", type=count(1, 1024), default=_env("workers", "4"), help="concurrent reconciles")
    a("--resync", type=seconds(1, 604800), default=_env("resync", "300"),
      help="seconds between full re-checks of every resource")
    a("--poll-interval", type=seconds(0.1, 3600), default=_env("poll_interval", "10"),
      help="seconds between reads of each pod's /v1/models (jittered)")
    a("--discovery-ttl", type=seconds(0, 604800), default=_env("discovery_ttl", "300"),
      help="seconds a source listing is reused before it is read again")
    a("--load-concurrency", type=count(1, 256), default=_env("load_concurrency", "4"),
      help="concurrent adapter loads per pod")
    a("--vllm-timeout", type=seconds(0.1, 600), default=_env("vllm_timeout", "10"),
      help="timeout of vLLM calls other than loads (seconds)")
    a("--load-timeout", type=seconds(0.1, 3600), default=_env("load_timeout", "120"),
      help="timeout of one adapter load (seconds)")
    a("--vllm-api-key-file", default=_env("vllm_api_key_file"),
      help="file holding the vLLM pods' API key (--api-key), sent as a bearer token")
    a("--router-token-file", default=_env("router_token_file"),
      help="file holding a bearer token that router API clients must send")
    a("--identity", default=_env("identity"),
      help="leader-election identity (default: hostname and a random suffix)")
    a("--advertise-url", default=_env("advertise_url"),
      help="this replica's router API URL, shown to routers by standbys (default from $POD_IP)")
    a("--log-format", choices=["json", "console"], default=_env("log_format", "console"))
    a("--log-level", default=_env("log_level", "info"),
      choices=["debug", "info", "warning", "error"])
