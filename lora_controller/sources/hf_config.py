"""Reading one small file (an adapter_config.json) from a HuggingFace hub: bounded and cached.

`hf_hub_download` writes whatever the hub streams to disk and then the caller reads it whole, so a
hub that lists a config at 200 bytes and streams a gigabyte would cost a gigabyte. Here the file
is fetched with the library's own HTTP session (its headers, its redirect handling), uncompressed
(`Accept-Encoding: identity`, so no gzip bomb), and the read stops one byte past the listed size.
An error answer is mapped by the library from its status and headers and at most 64 KiB of body.

Files are cached by their content id (the LFS sha256, or else the git blob id), checked on write
and on read, so rediscovering an unchanged repository costs no download and a damaged cache entry
is simply fetched again.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx2
from huggingface_hub import get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.utils._headers import build_hf_headers

from lora_controller.sources.bounded import read_local, too_much
from lora_controller.sources.errors import InvalidAdapterConfig, SourceError, SourceUnreachable
from lora_controller.sources.model import AdapterFile

_ERROR_BODY = 64 * 1024
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


def content_id(file: AdapterFile | None) -> tuple[str, Callable[[bytes], str]] | None:
    """The id a cached copy of `file` is stored under, and how to compute it from content."""
    if file is None:
        return None
    if file.sha256:
        return file.sha256.lower(), lambda data: hashlib.sha256(data).hexdigest()
    if file.etag and _GIT_SHA1.match(file.etag):
        return file.etag, _git_blob_sha1
    return None


def read_hub_file(
    *,
    endpoint: str,
    repository: str,
    filename: str,
    revision: str | None,
    token: str | None,
    listed: AdapterFile | None,
    max_bytes: int,
    cache_dir: str,
    timeout: float,
    what: str,
) -> bytes:
    """At most `max_bytes` of `filename` (blocking: run it in a thread; see module doc)."""
    key = content_id(listed)
    cache = os.path.join(cache_dir, "configs")
    if key is not None:
        try:
            data = read_local(cache, [key[0]], max_bytes=max_bytes, what=what,
                              error=InvalidAdapterConfig, timeout=timeout)
            if key[1](data) == key[0]:
                return data
        except SourceError:
            pass  # not cached (or damaged): fetch it
    url = hf_hub_url(repository, filename, revision=revision, endpoint=endpoint)
    data = _get(url, token=token, max_bytes=max_bytes, timeout=timeout, what=what)
    if key is not None and key[1](data) == key[0]:
        _store(Path(cache), key[0], data)
    return data


def _get(url: str, *, token: str | None, max_bytes: int, timeout: float, what: str) -> bytes:
    headers = build_hf_headers(token=token or False)
    headers["Accept-Encoding"] = "identity"
    deadline = time.monotonic() + timeout
    with get_session().stream("GET", url, headers=headers, timeout=timeout,
                              follow_redirects=True) as resp:
        if resp.status_code >= 400:
            head = b""
            for chunk in resp.iter_raw(_ERROR_BODY):
                head = chunk[:_ERROR_BODY]
                break
            hf_raise_for_status(httpx2.Response(
                resp.status_code, headers=resp.headers, content=head, request=resp.request))
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise InvalidAdapterConfig(too_much(what, max_bytes))
        chunks: list[bytes] = []
        total = 0
        for chunk in resp.iter_raw(64 * 1024):
            total += len(chunk)
            if total > max_bytes:
                raise InvalidAdapterConfig(too_much(what, max_bytes))
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise SourceUnreachable(f"{what}: the hub did not send it within {timeout:g}s")
        return b"".join(chunks)


def _store(cache: Path, name: str, data: bytes) -> None:
    """Write a verified copy (atomically: a reader sees all of it or nothing); best effort."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(data)
        os.replace(tmp, cache / name)
    except OSError:
        pass
