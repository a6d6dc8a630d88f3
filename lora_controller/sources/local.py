"""Local source through fsspec's local filesystem: a folder on a volume the vLLM pods mount.

`repository` is an absolute path that the controller and the vLLM pods see at the same place;
every folder below it (or it itself) holding adapter_config.json is an adapter. Nothing is copied:
vLLM is told the folder itself. The version is a digest of the files' sizes and mtimes.

The folder is walked with `os.scandir` and no link is followed: only real folders are entered and
only regular files are listed (sizes from `lstat`), so a link can neither pull files from elsewhere
into an adapter nor make its measured size lie. What is skipped is not silent: the links and
special files are named in `notes` (the discovery's note), and an adapter whose config or weight
file is one of them fails, saying so. Configs are read with the bounded, non-blocking,
no-link reads of `bounded`.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lora_controller.sources.bounded import read_local
from lora_controller.sources.errors import (
    AccessDenied,
    InvalidAdapterConfig,
    InvalidSource,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
    printable,
)
from lora_controller.sources.model import (
    CONFIG_FILE,
    AdapterFile,
    Candidate,
    DiscoveredAdapter,
    SourceOptions,
)

T = TypeVar("T")


def check_local_path(path: str) -> str:
    """`path` if it is absolute without '.'/'..' segments or control characters (it is sent to
    vLLM as is); InvalidSource otherwise."""
    if printable(path) != path:
        raise InvalidSource(
            f"local repository '{printable(path)}' must not contain control characters"
        )
    if not path.startswith("/"):
        raise InvalidSource(f"local repository {path!r} must be an absolute path")
    if any(seg in (".", "..") for seg in path.split("/")):
        raise InvalidSource(f"local repository {path!r} must not contain '.' or '..' segments")
    return path.rstrip("/") or "/"


class LocalSource:
    """One absolute folder on a shared volume."""

    endpoint: str | None = None

    def __init__(self, repository: str, *, options: SourceOptions) -> None:
        self.root = check_local_path(repository)
        self._options = options
        self.notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"LocalSource({self.root!r})"

    async def _call(self, fn: Callable[[], T], *, what: str, timeout: float | None = None) -> T:
        limit = timeout if timeout is not None else self._options.listing_timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), limit)
        except TimeoutError:
            raise SourceUnreachable(
                f"{what}: the volume did not answer within {limit:g}s"
            ) from None
        except SourceError:
            raise
        except PermissionError as exc:
            raise AccessDenied(f"{what}: permission denied ({exc.strerror})") from None
        except FileNotFoundError:
            raise SourceNotFound(f"{what}: no such file or folder") from None
        except OSError as exc:
            raise SourceUnreachable(f"{what}: {exc.strerror or type(exc).__name__}") from None

    async def candidates(self) -> list[Candidate]:
        def scan() -> tuple[dict[str, list[AdapterFile]], dict[str, list[str]]]:
            if not os.path.isdir(self.root):
                if os.path.exists(self.root):
                    raise InvalidSource(f"local repository {self.root!r} is not a folder")
                raise SourceNotFound(
                    f"local folder {self.root!r} does not exist (is the volume mounted in the "
                    f"controller at the same path as in the vLLM pods?)"
                )
            if not os.access(self.root, os.R_OK | os.X_OK):
                raise AccessDenied(f"local folder {self.root!r} is not readable by the controller")
            return walk(self.root)

        folders, skipped = await self._call(scan, what=f"local folder {self.root!r}")
        self.notes = _skipped_note(self.root, skipped)
        root_name = posixpath.basename(self.root)
        out = []
        for folder in sorted(set(folders) | set(skipped)):
            files, links = folders.get(folder, []), skipped.get(folder, [])
            if not any(f.path == CONFIG_FILE for f in files) and CONFIG_FILE not in links:
                continue
            location = posixpath.join(self.root, folder) if folder else self.root
            out.append(Candidate(
                segments=tuple(folder.split("/")) if folder else (),
                root_name=root_name, repository=self.root, location=location,
                files=tuple(sorted(files, key=lambda f: f.path)), skipped=tuple(sorted(links)),
            ))
        return out

    async def resolve(self, candidate: Candidate) -> Candidate:
        return candidate

    async def read_file(self, candidate: Candidate, path: str, *, max_bytes: int) -> bytes:
        """At most `max_bytes` of a regular file of the adapter, no link followed (see module)."""
        full = posixpath.join(candidate.location, path)
        timeout = self._options.request_timeout
        return await self._call(
            lambda: read_local(self.root, [*candidate.segments, path], max_bytes=max_bytes,
                               what=full, error=InvalidAdapterConfig, timeout=timeout),
            what=full, timeout=timeout,
        )

    async def fetch(self, adapter: DiscoveredAdapter, file: AdapterFile, dest: Path) -> None:
        raise InvalidSource("local adapters are served in place and never staged")

    async def aclose(self) -> None:
        return None


def walk(root: str) -> tuple[dict[str, list[AdapterFile]], dict[str, list[str]]]:
    """Regular files under `root` by folder (relative, '' for the root), and the names of the
    links and special files skipped, by folder; no link is followed."""
    folders: dict[str, list[AdapterFile]] = {}
    skipped: dict[str, list[str]] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            entries = list(os.scandir(posixpath.join(root, rel) if rel else root))
        except OSError:
            if not rel:
                raise
            continue  # an unreadable sub-folder: its adapters are not offered
        for entry in entries:
            sub = posixpath.join(rel, entry.name) if rel else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                pending.append(sub)
            elif stat.S_ISREG(info.st_mode):
                folders.setdefault(rel, []).append(AdapterFile(
                    path=entry.name, size=info.st_size, mtime_ns=int(info.st_mtime * 1e9),
                ))
            else:
                skipped.setdefault(rel, []).append(entry.name)
    return folders, skipped


def _skipped_note(root: str, skipped: dict[str, list[str]], *, shown: int = 10) -> tuple[str, ...]:
    """The discovery note naming the links and special files skipped under `root`, if any."""
    paths = sorted(posixpath.join(folder, name) if folder else name
                   for folder, names in skipped.items() for name in names)
    if not paths:
        return ()
    listed = ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown
                                         else "")
    return (printable(
        f"{len(paths)} symbolic link(s) or special file(s) under {root} were skipped (links are "
        f"not followed in a local source; put the files themselves there): {listed}"),)
