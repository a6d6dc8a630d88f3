"""Bounded reads: nothing a source lists, a file holds or a server sends is read beyond a limit.

Sources are not trusted. A listing says how large a file is; the read then stops one byte past that
size (and past a hard limit for configs), so a file that grew, a server that streams more than it
listed or a `Content-Length` that lies fails instead of filling memory or disk. Local files are
opened below their root without following any link (`O_NOFOLLOW` on every component) and without
blocking (`O_NONBLOCK`, so a FIFO swapped in after the listing cannot hang a thread in `open`),
then `fstat` must show a regular file before a byte is read, and reading stops at a deadline.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Sequence

from lora_controller.sources.errors import (
    AccessDenied,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
)

CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def too_much(what: str, max_bytes: int) -> str:
    """The message for a file or answer longer than it was listed."""
    return (f"{what}: the source sent more than the {max_bytes} bytes listed for it (it changed "
            f"after it was listed, or the source misreports sizes)")


def file_kind(mode: int) -> str:
    """A person's word for a file type that is not a regular file."""
    for test, word in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "special file"


def open_beneath(root: str, parts: Sequence[str]) -> int:
    """A read-only fd of root/parts..., following no link below `root` and never blocking."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)


def read_fd(
    fd: int, *, max_bytes: int, what: str, error: type[SourceError], deadline: float,
) -> bytes:
    """At most `max_bytes` of a regular file; `error` for anything else or anything more."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} is not a regular file (it is a {file_kind(st.st_mode)})")
    if st.st_size > max_bytes:
        raise error(too_much(what, max_bytes))
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(CHUNK, max_bytes + 1 - total)):
        total += len(chunk)
        if total > max_bytes:
            raise error(too_much(what, max_bytes))
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise SourceUnreachable(f"{what}: reading did not finish in time")
    return b"".join(chunks)


def read_local(
    root: str, parts: Sequence[str], *, max_bytes: int, what: str, error: type[SourceError],
    timeout: float,
) -> bytes:
    """root/parts, read with `open_beneath` and `read_fd`; OS errors mapped to SourceErrors."""
    try:
        fd = open_beneath(root, parts)
    except OSError as exc:
        raise open_error(exc, what=what, error=error) from None
    try:
        return read_fd(fd, max_bytes=max_bytes, what=what, error=error,
                       deadline=time.monotonic() + timeout)
    finally:
        os.close(fd)


def open_error(exc: OSError, *, what: str, error: type[SourceError]) -> SourceError:
    """What an OSError of `open_beneath` means for the person who owns the source."""
    code = exc.errno
    if code == errno.ELOOP:
        return error(f"{what} is a symbolic link: links are not followed in a source")
    if code == errno.ENOTDIR:
        return error(f"a folder on the path of {what} is a symbolic link or not a folder")
    if code in (errno.ENXIO, errno.EOPNOTSUPP):
        return error(f"{what} is not a regular file")
    if code == errno.ENOENT:
        return SourceNotFound(f"{what}: no such file (removed after it was listed?)")
    if code in (errno.EACCES, errno.EPERM):
        return AccessDenied(f"{what}: permission denied")
    return SourceUnreachable(f"{what}: {exc.strerror or type(exc).__name__}")

