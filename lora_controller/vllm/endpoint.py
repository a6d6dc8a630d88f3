"""Where a vLLM pod's OpenAI-compatible server listens: a small frozen value the client takes per call.

Kept apart from the client so that the reconciler, the observed-state cache and the tests can build and
compare endpoints (as dict keys, in sets) without touching HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A pod's vLLM server address; `api_key` (if any) is never shown in repr and not part of equality."""

    host: str
    port: int = 8000
    scheme: str = "http"
    api_key: str | None = field(default=None, repr=False, compare=False, hash=False)

    @property
    def base_url(self) -> str:
        """`scheme://host:port` with IPv6 hosts bracketed."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of `path` (which starts with `/`) on this endpoint."""
        return self.base_url + path

    @classmethod
    def parse(cls, url: str, *, api_key: str | None = None) -> Endpoint:
        """Build an endpoint from a base URL such as `http://10.0.0.7:8000`."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if not parts.hostname:
            raise ValueError(f"no host in vLLM endpoint URL {url!r}")
        scheme = parts.scheme or "http"
        port = parts.port or (443 if scheme == "https" else 8000)
        return cls(host=parts.hostname, port=port, scheme=scheme, api_key=api_key)

    def __str__(self) -> str:
        return self.base_url
