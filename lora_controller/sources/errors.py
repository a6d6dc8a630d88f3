"""Typed failures of the sources layer, each with a CamelCase reason a reconciler can map.

A whole-source failure (the bucket does not exist, the token is refused, the hub is down) is raised
as a `SourceError` subclass; a problem with one adapter (its config is invalid, its name is unusable)
is returned as an `AdapterError` next to the adapters that are fine, so one bad folder never hides the
others. Messages are written for the person who owns the resource and never contain a secret: text
that comes from a library is passed through `redact` before it is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote, quote_plus

REDACTED = "***"
MIN_FRAGMENT = 6  # a piece of a secret (one of its lines) this long is redacted on its own
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def secret_forms(value: str) -> set[str]:
    """Every way `value` can appear in a message: as is, as a str or bytes repr (what a library
    prints, `b'Bearer ...'`), JSON- or unicode-escaped, percent-encoded, and each of its lines
    (or runs between control characters) when long enough to give it away."""
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1],
             value.encode("unicode_escape").decode("ascii"),
             repr(value.encode("utf-8", "backslashreplace"))[2:-1]}
    try:
        forms.add(repr(value.encode("latin-1"))[2:-1])
    except UnicodeEncodeError:
        pass
    forms |= {part for part in _CONTROL.split(value) if len(part) >= MIN_FRAGMENT}
    forms |= {encoded for form in list(forms) for encoded in (quote(form, safe=""),
                                                             quote(form), quote_plus(form))}
    return {form for form in forms if form}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret (see secret_forms; longest first) replaced by ***."""
    forms = {form for value in secrets if value for form in secret_forms(value)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


# Characters that would break a status, an event or a log line, or hide what text says: C0, DEL,
# C1, zero-width and direction marks, line/paragraph separators, bidi embeddings and isolates.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(text: str) -> str:
    """`text` with every unprintable character escaped (\\n, \\x1b, \\u202e): names and paths
    from a source (S3 keys, folder names) never reach a status or an event raw."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def has_control_characters(value: str) -> bool:
    """True when `value` holds a control character (C0, DEL or C1), such as a line break."""
    return _CONTROL.search(value) is not None


class SourceError(Exception):
    """A failure that concerns a whole source (or one staging), with a reason code."""

    reason: ClassVar[str] = "SourceError"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        message = printable(message)
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


class InvalidCredentials(SourceError):
    """A credential in the Secret cannot be one (a control character in it); never echoed."""

    reason = "InvalidCredentials"


class NoAdaptersMatch(SourceError):
    """The source was read but nothing in it is selected by pattern, prefix and adapters."""

    reason = "NoAdaptersMatch"


class InvalidAdapterConfig(SourceError):
    """An adapter_config.json is missing, unreadable or lacks what vLLM needs."""

    reason = "InvalidAdapterConfig"


class AdapterWeightsLinked(SourceError):
    """A weight file is a link or special file: as good as missing (per adapter only)."""

    reason = "AdapterWeightsMissing"


class BaseModelMismatch(SourceError):
    """An adapter was trained for another base model than spec.baseModel."""

    reason = "BaseModelMismatch"


class SourceUnsupported(SourceError):
    """The source answered, but lacks what the controller needs (a hub that reports no sizes)."""

    reason = "SourceUnsupported"


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
PICKLE_WEIGHTS_NOT_ALLOWED = "PickleWeightsNotAllowed"


@dataclass(frozen=True)
class AdapterError:
    """One adapter that discovery found (or was asked for) but cannot offer, and why.

    Its name, message and location are made printable (see `printable`) when it is created."""

    name: str
    reason: str
    message: str
    location: str = ""

    def __post_init__(self) -> None:
        for attr in ("name", "message", "location"):
            object.__setattr__(self, attr, printable(getattr(self, attr)))
