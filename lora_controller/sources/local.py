"""Local source through fsspec's local filesystem: a folder on a volume the vLLM pods mount.

`repository` is an absolute path that the controller and the vLLM pods see at the same place;
every folder below it (or it itself) holding adapter_config.json is an adapter. Nothing is copied:
vLLM is told the folder itself. The version is a digest of the files' sizes and mtimes.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fsspec.implementations.local import LocalFileSystem

from lora_controller.sources.errors import (
    AccessDenied,
    InvalidSource,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
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
    """`path` if it is absolute without '.'/'..' segments; InvalidSource otherwise."""
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
        self._fs = LocalFileSystem()

    def __repr__(self) -> str:
        return f"LocalSource({self.root!r})"

    async def _call(self, fn: Callable[[], T], *, what: str) -> T:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), self._options.listing_timeout)
        except TimeoutError:
            raise SourceUnreachable(
                f"{what}: the volume did not answer within {self._options.listing_timeout:g}s"
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
        def scan() -> dict[str, dict[str, Any]]:
            if not os.path.isdir(self.root):
                if os.path.exists(self.root):
                    raise InvalidSource(f"local repository {self.root!r} is not a folder")
                raise SourceNotFound(
                    f"local folder {self.root!r} does not exist (is the volume mounted in the "
                    f"controller at the same path as in the vLLM pods?)"
                )
            if not os.access(self.root, os.R_OK | os.X_OK):
                raise AccessDenied(f"local folder {self.root!r} is not readable by the controller")
            found: dict[str, dict[str, Any]] = self._fs.find(self.root, detail=True)
            return found

        found = await self._call(scan, what=f"local folder {self.root!r}")
        base = self.root.rstrip("/") + "/"
        folders: dict[str, list[AdapterFile]] = {}
        for path, info in found.items():
            if not path.startswith(base) or info.get("type") != "file":
                continue
            folder, name = posixpath.split(path[len(base):])
            mtime = info.get("mtime")
            folders.setdefault(folder, []).append(AdapterFile(
                path=name, size=int(info.get("size") or 0),
                mtime_ns=int(float(mtime) * 1e9) if mtime is not None else None,
            ))
        root_name = posixpath.basename(self.root)
        out = []
        for folder, files in sorted(folders.items()):
            if not any(f.path == CONFIG_FILE for f in files):
                continue
            location = posixpath.join(self.root, folder) if folder else self.root
            out.append(Candidate(
                segments=tuple(folder.split("/")) if folder else (),
                root_name=root_name, repository=self.root, location=location,
                files=tuple(sorted(files, key=lambda f: f.path)),
            ))
        return out

    async def resolve(self, candidate: Candidate) -> Candidate:
        return candidate

    async def read_file(self, candidate: Candidate, path: str) -> bytes:
        full = posixpath.join(candidate.location, path)
        return await self._call(lambda: Path(full).read_bytes(), what=full)

    async def fetch(self, adapter: DiscoveredAdapter, file: AdapterFile, dest: Path) -> None:
        raise InvalidSource("local adapters are served in place and never staged")

    async def aclose(self) -> None:
        return None
