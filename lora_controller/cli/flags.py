"""The flags of `lora-controller run`: their types, ranges, defaults and environment variables.

Every flag has a matching environment variable, `LORA_CONTROLLER_<FLAG>` (upper case, `-` as `_`),
used when the flag is not given; the flag wins, also for `--namespace`, whose first use replaces
the environment's list. `run --help` shows each flag's range, default and variable. Defaults are
strings on purpose: argparse converts a string default with the flag's `type`, so a bad
environment value is refused like a bad flag. Every number has a range, and a value out of it is a
usage error: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

ENV_PREFIX = "LORA_CONTROLLER_"


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line that points to --help, not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _env(name: str, default: str | None = None) -> str | None:
    """The flag's environment variable; an empty value counts as unset."""
    return os.environ.get(env_name(name)) or default


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Count:
    """An argparse type: a whole number from `low` to `high`."""

    low: int
    high: int

    def __call__(self, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = self.low - 1
        if not self.low <= value <= self.high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {self}")
        return value

    def __str__(self) -> str:
        return f"{self.low} to {self.high}"


@dataclass(frozen=True)
class Seconds:
    """An argparse type: a number of seconds from `low` to `high` (nan and inf refused)."""

    low: float
    high: float

    def __call__(self, text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from {self}")
        return value

    def __str__(self) -> str:
        return f"{self.low:g} to {self.high:g}"


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


_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def namespace_list(text: str) -> list[str]:
    """An argparse type: one namespace or several, comma-separated."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not _NAMESPACE.match(n)]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"{(bad or [text])[0]!r} is not a namespace name (lower-case letters, digits and "
            "'-', at most 63)")
    return names


class ExtendReplacingDefault(argparse.Action):
    """Like `extend`, except that the first use on the command line replaces the default (the
    environment's value) instead of adding to it: the flag wins over the environment."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest)
        kept = [] if current is self.default or current is None else list(current)
        setattr(namespace, self.dest, kept + list(values))


def _flag(parser: argparse.ArgumentParser, flag: str, text: str, *, default: Any = None,
          shown: str | None = None, **kwargs: Any) -> None:
    """Add `flag`, defaulting to its environment variable, else `default`; its help says the range
    (of a Count or Seconds type), the default (`shown`, else `default`) and the variable."""
    env = env_name(flag)
    shown = shown if shown is not None else "none" if default is None else str(default)
    kind = kwargs.get("type")
    limits = f"{kind}; " if isinstance(kind, Count | Seconds) else ""
    if isinstance(kind, Count | Seconds):
        kwargs.setdefault("metavar", "N" if isinstance(kind, Count) else "SECONDS")
    if not kwargs.get("action"):
        default = os.environ.get(env) or default
    action = parser.add_argument(flag, default=default, **kwargs)
    action.help = f"{text} ({limits}default: {shown}; env {env})"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    _cluster_flags(parser)
    _tuning_flags(parser)


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    f = partial(_flag, parser)
    f("--kubeconfig", "kubeconfig file of the API server to use",
      default=os.environ.get("KUBECONFIG"), shown="$KUBECONFIG, else the in-cluster service account",
      metavar="PATH")
    f("--namespace", "serve only this namespace; repeatable, or comma-separated; given, it "
      "replaces the environment's list", dest="namespaces", type=namespace_list,
      action=ExtendReplacingDefault, default=_env("namespace"), shown="all namespaces",
      metavar="NS")
    f("--adapter-store", "folder where HuggingFace/S3 adapters are staged; the vLLM pods mount it "
      "at the same path", default="/var/lib/lora-adapters", metavar="PATH")
    f("--listen", "HOST:PORT of the router API, /metrics, /healthz and /readyz",
      type=listen_address, default="0.0.0.0:8080", metavar="HOST:PORT")
    f("--leader-elect", "elect one active replica through a Lease",
      action=argparse.BooleanOptionalAction, default=_env_bool("leader_elect", True), shown="on")
    f("--lease-name", "name of the coordination.k8s.io Lease the replicas compete for",
      default="lora-controller", metavar="NAME")
    f("--lease-namespace", "namespace of that Lease",
      default=os.environ.get("POD_NAMESPACE") or "default", shown="$POD_NAMESPACE, else default",
      metavar="NS")
    f("--lease-duration", "seconds a leader's Lease is valid without renewal",
      type=Seconds(1, 3600), default="15")
    f("--renew-deadline", "seconds the leader keeps trying to renew before it stops acting",
      type=Seconds(0.5, 3600), default="10")
    f("--retry-period", "seconds between leader-election attempts",
      type=Seconds(0.1, 600), default="2")
    f("--identity", "leader-election identity", shown="hostname and a random suffix", metavar="ID")
    f("--advertise-url", "this replica's router API URL, shown to routers by standbys",
      shown="http://$POD_IP:PORT when POD_IP is set", metavar="URL")


def _tuning_flags(parser: argparse.ArgumentParser) -> None:
    f = partial(_flag, parser)
    f("--workers", "namespaces reconciled at once", type=Count(1, 1024), default="4")
    f("--resync", "seconds between full re-checks of every resource",
      type=Seconds(1, 604800), default="300")
    f("--poll-interval", "most seconds between reads of each pod's /v1/models (jittered down by up to 20%%)",
      type=Seconds(0.1, 3600), default="10")
    f("--discovery-ttl", "seconds a source listing is reused before it is read again",
      type=Seconds(0, 604800), default="300")
    f("--load-concurrency", "concurrent adapter loads per pod", type=Count(1, 256), default="4")
    f("--action-wait", "seconds a reconcile waits for its loads before it moves on (they go on "
      "in the background)", type=Seconds(0.1, 600), default="10")
    f("--scale-down-delay", "seconds a lower replica count must be what demand asks for, "
      "throughout, before replicas of a demand-scaled adapter are removed",
      type=Seconds(1, 86400), default="120")
    f("--vllm-timeout", "seconds a call to a vLLM pod other than a load may take",
      type=Seconds(0.1, 600), default="10")
    f("--load-timeout", "seconds one adapter load may take",
      type=Seconds(0.1, 3600), default="120")
    f("--vllm-api-key-file", "file holding the vLLM pods' API key (--api-key), sent as a bearer "
      "token", metavar="PATH")
    f("--router-token-file", "file holding a bearer token that router API clients must send",
      metavar="PATH")
    f("--log-format", "log lines as JSON or as aligned key=value", choices=["json", "console"],
      default="console")
    f("--log-level", "lowest level logged", choices=["debug", "info", "warning", "error"],
      default="info")
