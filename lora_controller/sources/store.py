"""The adapter store: HuggingFace and S3 adapters staged into a folder the vLLM pods read.

Layout: ROOT/<namespace>/<cr>/<adapter>/<version>/ holds the adapter's files, flat. A version is
downloaded into a hidden sibling ROOT/.../<adapter>/.tmp-<version>-<random>/, every file's size
(and, for HuggingFace, its git or LFS hash) is checked, modes are set (0644 files, 0755 folders) and
the folder is renamed into place: a reader sees a complete adapter or nothing. Staging an adapter
version already in place only checks its sizes. Downloads are bounded store-wide and retried with
jittered exponential backoff on transient errors; a partial download left by a crash is a hidden
temporary folder that `gc` removes, with the versions nothing uses any more.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import shutil
import stat
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from lora_controller.api.types import SourceType
from lora_controller.sources import metrics
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.discovery import SourceReader, open_for_adapter
from lora_controller.sources.errors import InvalidSource, SourceError, StagingFailed
from lora_controller.sources.model import (
    VERSION_RE,
    AdapterFile,
    DiscoveredAdapter,
    SourceOptions,
)

log = structlog.get_logger(__name__)

_VERSION = re.compile(VERSION_RE)
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
FILE_MODE = 0o644
DIR_MODE = 0o755
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per file and the jittered exponential backoff between them (seconds)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 15.0

    def delay(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): full jitter below the exponential cap."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(cap / 2, cap)


def _segment(value: str, what: str) -> str:
    if not _SEGMENT.match(value) or value in (".", ".."):
        raise InvalidSource(f"{what} {value!r} cannot be used as a folder name")
    return value


def _file_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise InvalidSource(f"file name {name!r} would escape the adapter folder")
    return name


def _open_regular(path: Path) -> tuple[int, int] | None:
    """(fd, size) of `path` when it is a regular file (no link followed, never blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st.st_size


def _digest(path: Path, h: Any, *, size: int) -> str:
    """`h` over the first `size` bytes of the regular file `path` (its whole content when the
    caller checked its size); an empty digest when it is not a regular file."""
    opened = _open_regular(path)
    if opened is None:
        return ""
    fd, _ = opened
    try:
        left = size
        while left > 0 and (chunk := os.read(fd, min(_HASH_CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return str(h.hexdigest())


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file's content (what the Hub reports for non-LFS files)."""
    size = path.lstat().st_size
    h = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    return _digest(path, h, size=size)


def file_sha256(path: Path) -> str:
    return _digest(path, hashlib.sha256(), size=path.lstat().st_size)


def _verify_file(adapter: DiscoveredAdapter, file: AdapterFile, path: Path) -> str | None:
    """Why the downloaded `path` is not `file`, or None when it is (size, then Hub hashes).

    Only a regular file counts (a link is never followed) and hashing reads no more than the
    listed size."""
    opened = _open_regular(path)
    if opened is None:
        return "the file is missing after the download, or is not a regular file"
    fd, size = opened
    os.close(fd)
    if size != file.size:
        return f"size is {size} bytes, the source listed {file.size}"
    if adapter.source_type is SourceType.HUGGINGFACE:
        if file.sha256 and file_sha256(path) != file.sha256.lower():
            return "its sha256 differs from the one the hub listed"
        if not file.sha256 and file.etag and re.fullmatch(r"[0-9a-f]{40}", file.etag) \
                and git_blob_sha1(path) != file.etag:
            return "its git blob id differs from the one the hub listed"
    return None


def _sizes_match(adapter: DiscoveredAdapter, folder: Path) -> bool:
    """Every file of `adapter` is a regular file (not a link) of its listed size in `folder`."""
    for f in adapter.files:
        try:
            st = (folder / f.path).lstat()
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
            return False
    return True


class AdapterStore:
    """Stages adapter versions under `root` (see module doc)."""

    def __init__(
        self,
        root: Path,
        *,
        max_concurrent_downloads: int = 4,
        options: SourceOptions | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.root = Path(root)
        self._options = options or SourceOptions()
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._downloads = asyncio.Semaphore(max(1, max_concurrent_downloads))
        self._locks: dict[Path, tuple[asyncio.Lock, int]] = {}  # lock, users
        self._staging: set[Path] = set()  # final paths being staged now
        self._tmp_in_use: set[Path] = set()

    def path_for(self, *, namespace: str, cr: str, adapter: str, version: str) -> Path:
        """ROOT/<namespace>/<cr>/<adapter>/<version>; InvalidSource for unsafe components."""
        return (self.root / _segment(namespace, "namespace") / _segment(cr, "resource name")
                / _segment(adapter, "adapter name") / _segment(version, "version"))

    async def stage(
        self,
        adapter: DiscoveredAdapter,
        *,
        namespace: str,
        cr: str,
        credentials: SourceCredentials | None,
    ) -> Path:
        """The folder vLLM should load `adapter` from, downloading it first when needed."""
        if adapter.source_type is SourceType.LOCAL:
            return Path(adapter.location)
        final = self.path_for(namespace=namespace, cr=cr, adapter=adapter.name,
                              version=adapter.version)
        for f in adapter.files:
            _file_name(f.path)
        lock, users = self._locks.get(final, (asyncio.Lock(), 0))
        self._locks[final] = (lock, users + 1)
        try:
            async with lock:
                self._staging.add(final)
                try:
                    return await self._stage_locked(adapter, final, credentials=credentials)
                finally:
                    self._staging.discard(final)
        finally:
            lock, users = self._locks[final]
            if users <= 1:
                del self._locks[final]
            else:
                self._locks[final] = (lock, users - 1)

    async def _stage_locked(
        self, adapter: DiscoveredAdapter, final: Path, *, credentials: SourceCredentials | None,
    ) -> Path:
        source = adapter.source_type.value
        state = await asyncio.to_thread(_staged_state, adapter, final)
        if state == "complete":
            metrics.STAGED.labels(source, "reused").inc()
            return final
        if state == "broken":
            log.warning("sources.store.broken_version", path=str(final), adapter=adapter.name)
            await self._discard(final)
        parent = final.parent
        await asyncio.to_thread(_makedirs, parent, self.root)
        tmp = parent / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir(mode=DIR_MODE)
        self._tmp_in_use.add(tmp)
        started = time.monotonic()
        reader = open_for_adapter(adapter, credentials=credentials, options=self._options)
        try:
            # Wait for every file even when one fails: a download still writing into `tmp`
            # while it is being removed would leave a stray folder behind.
            results = await asyncio.gather(*(
                self._fetch_with_retries(reader, adapter, f, tmp) for f in adapter.files
            ), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            await asyncio.to_thread(_finish_folder, tmp)
            await asyncio.to_thread(_publish, adapter, tmp, final)
        except BaseException:
            await asyncio.shield(self._discard(tmp))
            raise
        finally:
            self._tmp_in_use.discard(tmp)
            await reader.aclose()
        await self._discard(tmp)  # only left when another process published the same version
        metrics.STAGED.labels(source, "downloaded").inc()
        log.info("sources.store.staged", adapter=adapter.name, version=adapter.version,
                 path=str(final), bytes=adapter.total_bytes,
                 seconds=round(time.monotonic() - started, 3))
        return final

    async def _fetch_with_retries(
        self, src: SourceReader, adapter: DiscoveredAdapter, file: AdapterFile, tmp: Path,
    ) -> None:
        dest = tmp / _file_name(file.path)
        source = adapter.source_type.value
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._downloads:
                    await src.fetch(adapter, file, dest)
                problem = await asyncio.to_thread(_verify_file, adapter, file, dest)
                if problem:
                    dest.unlink(missing_ok=True)
                    raise StagingFailed(
                        f"{adapter.location}/{file.path} does not match discovery: {problem} "
                        f"(changed at the source? it will be rediscovered)"
                    )
                metrics.DOWNLOADS.labels(source, "ok").inc()
                metrics.DOWNLOAD_BYTES.labels(source).inc(file.size)
                return
            except SourceError as exc:
                metrics.DOWNLOADS.labels(source, exc.reason).inc()
                if not exc.retryable or attempt >= self._retry.attempts:
                    raise
                delay = self._retry.delay(attempt)
                log.warning("sources.store.retry", adapter=adapter.name, file=file.path,
                            attempt=attempt, delay=round(delay, 3), reason=exc.reason,
                            error=exc.message)
                await self._sleep(delay)

    async def _discard(self, path: Path) -> None:
        await asyncio.to_thread(_discard, path)

    async def gc(
        self,
        *,
        keep: Collection[Path],
        namespace: str | None = None,
        cr: str | None = None,
        tmp_grace: float = 600.0,
    ) -> list[Path]:
        """Remove staged versions not in `keep` (within namespace/cr when given) and leftovers.

        Only folders shaped like the store's own (ROOT/ns/cr/adapter/<16 hex>) are candidates:
        anything else under the root is left alone. Leftovers are temporary folders of downloads that died (older than `tmp_grace` seconds
        and not in use by this store) and discarded folders. Returns the paths removed.
        """
        scope = self.root
        if namespace is not None:
            scope = scope / _segment(namespace, "namespace")
            if cr is not None:
                scope = scope / _segment(cr, "resource name")
        removed = await asyncio.to_thread(
            _collect, self.root, scope, keep=keep, busy=set(self._staging),
            tmp_in_use=set(self._tmp_in_use), tmp_grace=tmp_grace,
        )
        if removed:
            log.info("sources.store.gc", removed=len(removed), scope=str(scope))
        return removed


def _collect(
    root: Path,
    scope: Path,
    *,
    keep: Collection[Path],
    busy: set[Path],
    tmp_in_use: set[Path],
    tmp_grace: float,
) -> list[Path]:
    """gc's work, off the event loop: discard what is not kept, busy or young."""
    kept = {Path(os.path.abspath(p)) for p in keep}
    depth = 3 - len(scope.relative_to(root).parts)  # levels down to adapter folders
    now = time.time()
    removed: list[Path] = []
    for adapter_dir in _dirs_at(scope, depth):
        for entry in sorted(adapter_dir.iterdir()):
            if not entry.is_dir() or entry.is_symlink():
                continue
            if entry.name.startswith(TMP_PREFIX):
                try:
                    young = now - entry.stat().st_mtime < tmp_grace
                except FileNotFoundError:
                    continue
                if young or entry in tmp_in_use:
                    continue
            elif not entry.name.startswith(TRASH_PREFIX) and (
                not _VERSION.match(entry.name)  # not ours: never touched
                or Path(os.path.abspath(entry)) in kept or entry in busy
            ):
                continue
            _discard(entry)
            removed.append(entry)
        if not any(adapter_dir.iterdir()) and not any(p.parent == adapter_dir for p in busy):
            try:
                adapter_dir.rmdir()
            except OSError:
                pass
    return removed


def _staged_state(adapter: DiscoveredAdapter, final: Path) -> str:
    """'absent', 'complete' (every file there with its size) or 'broken'."""
    try:
        if not stat.S_ISDIR(final.lstat().st_mode):
            return "broken"  # a link or a file where a version folder belongs
    except FileNotFoundError:
        return "absent"
    return "complete" if _sizes_match(adapter, final) else "broken"


def _publish(adapter: DiscoveredAdapter, tmp: Path, final: Path) -> None:
    """Rename the finished `tmp` to `final` (atomic); fine if someone else just did it."""
    try:
        os.rename(tmp, final)
    except OSError:
        if _staged_state(adapter, final) != "complete":
            raise


def _discard(path: Path) -> None:
    """Rename `path` out of sight (so nobody sees it half deleted), then delete it."""
    trash = path.parent / f"{TRASH_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    except OSError:
        trash = path
    if trash.is_symlink() or not trash.is_dir():
        trash.unlink(missing_ok=True)  # never rmtree through a link
    else:
        shutil.rmtree(trash, ignore_errors=True)


def _dirs_at(base: Path, depth: int) -> list[Path]:
    """Real (non-symlink, non-hidden) folders exactly `depth` levels below `base`."""
    level = [base] if base.is_dir() else []
    for _ in range(depth):
        level = [c for d in level for c in sorted(d.iterdir())
                 if c.is_dir() and not c.is_symlink() and not c.name.startswith(".")]
    return level


def _makedirs(path: Path, root: Path) -> None:
    """Create `path` and its parents up to `root`, each 0755 whatever the umask."""
    missing = []
    p = path
    while not p.exists() and p != root and p != p.parent:
        missing.append(p)
        p = p.parent
    root.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)


def _finish_folder(tmp: Path) -> None:
    """Drop download bookkeeping and set modes readable by the vLLM pods."""
    for extra in tmp.iterdir():
        if extra.is_dir():  # adapters are flat: a folder here is a downloader's work area
            shutil.rmtree(extra, ignore_errors=True)
    for entry in tmp.iterdir():
        if entry.is_file():
            os.chmod(entry, FILE_MODE)
    os.chmod(tmp, DIR_MODE)
