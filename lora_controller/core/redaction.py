"""Redaction of credentials from text bound for a log: the last line of defence.

Code that handles a credential keeps it out of what it logs (errors name a Secret and a key, never a
value; the router never logs request bytes). This module catches what slips through anyway, such
as a third-party library's traceback: every credential the process knows is registered here when
it is read (the router token and the vLLM API key at start-up, HuggingFace and S3 keys when a
Secret is read), and the log renderer passes each finished line through `redact`, which replaces
every registered value, and anything shaped like a bearer token, an HF token, an AWS access key id
or a JWT, with `***`.

Values shorter than `MIN_SECRET_LENGTH` are not registered: they are no secret worth the name, and
replacing them everywhere would garble every line.
"""

from __future__ import annotations

import re
import threading

REDACTED = "***"
MIN_SECRET_LENGTH = 8

# Shapes of credentials that may reach a log without ever being registered (a client's wrong token,
# a Kubernetes service-account token, a key from a library's own configuration).
_SHAPES = re.compile(
    r"(?<=Bearer )(?!\*\*\*)[A-Za-z0-9._~+/=-]{8,}"
    r"|\bhf_[A-Za-z0-9]{20,}"
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
)

_lock = threading.Lock()
_secrets: set[str] = set()
_known: re.Pattern[str] | None = None


def register_secret(*values: str | None) -> None:
    """Remember credential values so that no log line shows them (None and short values skipped)."""
    global _known
    new = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH} - _secrets
    if not new:
        return
    with _lock:
        _secrets.update(new)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
        _known = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """`text` with every registered secret and every credential-shaped word replaced by ***."""
    known = _known
    if known is not None:
        text = known.sub(REDACTED, text)
    return _SHAPES.sub(REDACTED, text)
