"""Typed failures of the sources layer, each with a CamelCase reason a reconciler can map.

A whole-source failure (the bucket does not exist, the token is refused, the hub is down) is raised
as a `SourceError` subclass; a problem with one adapter (its config is invalid, its name is unusable)
is returned as an `AdapterError` next to the adapters that are fine, so one bad folder never hides the
others. Messages are written for the person who owns the resource and never contain a secret: text
that comes from a library is passed through `redact` before it is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

REDACTED = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value (longest first) replaced by ***."""
    for value in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


class SourceError(Exception):
    """A failure that concerns a whole source (or one staging), with a reason code."""

    reason: ClassVar[str] = "SourceError"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidSource(SourceError):
    """The adapterSource cannot be read as written (malformed repository, relative path, ...)."""

    reason = "InvalidSource"


class SourceNotFound(SourceError):
    """The repository, organisation, bucket, prefix or folder does not exist (or is hidden)."""

    reason = "SourceNotFound"


class AccessDenied(SourceError):
    """The source refused the credentials (HTTP 401/403, S3 AccessDenied, unreadable folder)."""

    reason = "AccessDenied"


class CredentialsMissing(SourceError):
    """The Secret named by credentialsSecretRef, or a key it must hold, is missing."""

    reason = "CredentialsMissing"


class NoAdaptersMatch(SourceError):
    """The source was read but nothing in it is selected by pattern, prefix and adapters."""

    reason = "NoAdaptersMatch"


class InvalidAdapterConfig(SourceError):
    """An adapter_config.json is missing, unreadable or lacks what vLLM needs."""

    reason = "InvalidAdapterConfig"


class BaseModelMismatch(SourceError):
    """An adapter was trained for another base model than spec.baseModel."""

    reason = "BaseModelMismatch"


class SourceUnreachable(SourceError):
    """A network failure or timeout: worth retrying later."""

    reason = "SourceUnreachable"
    retryable = True


class StagingFailed(SourceError):
    """Downloaded files do not match what discovery saw (size or checksum): retry rediscovers."""

    reason = "StagingFailed"
    retryable = True


# Reasons used only for per-adapter errors (never raised for a whole source).
ADAPTER_NOT_FOUND = "AdapterNotFound"
INVALID_ADAPTER_NAME = "InvalidAdapterName"
DUPLICATE_ADAPTER_NAME = "DuplicateAdapterName"
ADAPTER_WEIGHTS_MISSING = "AdapterWeightsMissing"


@dataclass(frozen=True)
class AdapterError:
    """One adapter that discovery found (or was asked for) but cannot offer, and why."""

    name: str
    reason: str
    message: str
    location: str = ""
