"""HuggingFace Hub source, through huggingface_hub: list repositories and files, read, download.

`repository: org/repo` is one repository: each folder holding adapter_config.json is an adapter (the
root is named after the repository). `repository: org` lists the author's model repositories and
each one with adapter_config.json at its root is an adapter. Files are listed with one
`model_info(files_metadata=True)` call per repository, which also pins the commit: configs and
weights are then read at that commit, so a listing and its downloads always agree.

huggingface_hub is synchronous: every call runs in this module's thread pool, bounded by a timeout.
The endpoint is read from HF_ENDPOINT when a source is opened (not when the library was imported),
the token only ever comes from the Secret (`token=False` otherwise: no ambient token is used).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo, RepoFile
from huggingface_hub.utils.tqdm import disable_progress_bars

from lora_controller.sources.errors import (
    AccessDenied,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
    SourceUnsupported,
    redact,
)
from lora_controller.sources.hf_config import read_hub_file
from lora_controller.sources.model import (
    CONFIG_FILE,
    AdapterFile,
    Candidate,
    DiscoveredAdapter,
    SourceOptions,
)

log = structlog.get_logger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
T = TypeVar("T")

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """A pool of our own, so slow hub calls never starve asyncio's default executor."""
    global _pool
    with _pool_lock:
        if _pool is None:
            disable_progress_bars("huggingface_hub")  # no progress bars in a controller
            _pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="hf-hub")
        return _pool


def current_endpoint() -> str:
    """HF_ENDPOINT as set now, else the public Hub."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _is_network(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("httpx", "httpcore", "h11", "h2")) or isinstance(
        exc, ConnectionError | TimeoutError
    )


class HuggingFaceSource:
    """One `org/repo` or `org` on one hub endpoint, read with one (optional) token."""

    notes: tuple[str, ...] = ()

    def __init__(
        self,
        repository: str,
        *,
        revision: str | None,
        token: str | None,
        options: SourceOptions,
        endpoint: str | None = None,
        secret_name: str = "",
    ) -> None:
        self.repository = repository.strip("/")
        self.revision = revision
        self.endpoint = (endpoint or current_endpoint()).rstrip("/")
        self._token = token
        self._secret_name = secret_name
        self._options = options
        self._api = HfApi(endpoint=self.endpoint, token=token or False)
        cache = options.hf_cache_dir or os.path.join(
            tempfile.gettempdir(), "lora-controller", "hf-cache"
        )
        self._cache_dir = cache

    def __repr__(self) -> str:
        return f"HuggingFaceSource({self.repository!r}, endpoint={self.endpoint!r})"

    # -- calls -------------------------------------------------------------------------------

    async def _call(self, fn: Callable[[], T], *, timeout: float, what: str) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(_executor(), fn), timeout)
        except TimeoutError:
            raise SourceUnreachable(
                f"{what}: no answer from {self.endpoint} within {timeout:g}s"
            ) from None
        except SourceError:
            raise
        except Exception as exc:
            raise self._map_error(exc, what=what) from None

    def _map_error(self, exc: BaseException, *, what: str) -> SourceError:
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                        [self._token or ""])
        token_hint = (f"the token in Secret {self._secret_name!r}" if self._token
                      else "no token (set credentialsSecretRef to a Secret with HF_TOKEN)")
        for e in _chain(exc):
            if isinstance(e, GatedRepoError):
                return AccessDenied(
                    f"{what}: the repository is gated; accept its conditions on the Hub with the "
                    f"account of {token_hint} ({detail})"
                )
            if isinstance(e, RepositoryNotFoundError):
                if e.response is not None and e.response.status_code == 401 and self._token \
                        and "invalid credentials" in str(e).lower():
                    return AccessDenied(f"{what}: {token_hint} was refused ({detail})")
                return SourceNotFound(
                    f"{what}: not found on {self.endpoint}, or private and not readable with "
                    f"{token_hint}"
                )
            if isinstance(e, RevisionNotFoundError):
                return SourceNotFound(
                    f"{what}: revision {self.revision or 'main'!r} not found (check "
                    f"adapterSource.revision)"
                )
            if isinstance(e, HfHubHTTPError) and e.response is not None:
                status = e.response.status_code
                if status in (401, 403):
                    return AccessDenied(f"{what}: access refused for {token_hint} ({detail})")
                if status == 404:
                    return SourceNotFound(f"{what}: not found on {self.endpoint} ({detail})")
                return SourceUnreachable(f"{what}: the hub answered HTTP {status} ({detail})")
            if isinstance(e, EntryNotFoundError) and not isinstance(e, LocalEntryNotFoundError):
                return SourceNotFound(f"{what}: file not found ({detail})")
            if _is_network(e):
                return SourceUnreachable(f"{what}: cannot reach {self.endpoint} ({detail})")
        return SourceUnreachable(f"{what}: {type(exc).__name__} ({detail})")

    # -- discovery ---------------------------------------------------------------------------

    @property
    def is_org(self) -> bool:
        return "/" not in self.repository

    async def candidates(self) -> list[Candidate]:
        """Every folder (repo mode) or repository (org mode) that holds adapter_config.json."""
        if self.is_org:
            return await self._org_candidates()
        return await self._listing(self.repository)

    async def _listing(self, repo_id: str) -> list[Candidate]:
        """The adapter folders of one repository at one pinned commit, with file sizes: from its
        model info, or from its tree listing when the hub's model info has none."""
        info = await self._model_info(repo_id)
        files = _sibling_files(info)
        if files is None:
            files = await self._tree_files(repo_id, info.sha)
        return _repo_candidates(files, repository=repo_id, revision=info.sha)

    async def _tree_files(self, repo_id: str, sha: str | None) -> list[tuple[str, AdapterFile]]:
        """Every file of the repository from its (recursive, paginated) tree listing."""
        def tree() -> list[tuple[str, AdapterFile]] | None:
            try:
                entries = list(self._api.list_repo_tree(
                    repo_id, recursive=True, revision=sha or self.revision))
            except (KeyError, TypeError):
                return None  # entries without a size (or an id): the library cannot read them
            files = [e for e in entries if isinstance(e, RepoFile)]
            if any(not isinstance(f.size, int) for f in files):
                return None
            return [(f.path, AdapterFile(path=posixpath.basename(f.path), size=f.size,
                                         etag=f.blob_id, sha256=f.lfs.sha256 if f.lfs else None))
                    for f in files]

        what = f"huggingface repository {repo_id!r}"
        files = await self._call(tree, timeout=self._options.listing_timeout, what=what)
        if files is None:
            raise SourceUnsupported(
                f"{what}: the hub at {self.endpoint} reports no file sizes, neither in its model "
                f"info (?blobs=true) nor in its tree listing; the controller needs them to measure "
                f"adapters and check downloads: use a hub that reports them"
            )
        return files

    async def _model_info(self, repo_id: str) -> ModelInfo:
        return await self._call(
            lambda: self._api.model_info(
                repo_id, revision=self.revision, files_metadata=True,
                timeout=self._options.request_timeout,
            ),
            timeout=self._options.request_timeout * 2,
            what=f"huggingface repository {repo_id!r}",
        )

    async def _org_candidates(self) -> list[Candidate]:
        org = self.repository
        models = await self._call(
            lambda: list(self._api.list_models(author=org, full=True)),
            timeout=self._options.listing_timeout,
            what=f"huggingface author {org!r}",
        )
        if not models:
            raise SourceNotFound(
                f"huggingface author {org!r} has no model repositories visible on "
                f"{self.endpoint} (check the name, and the token for private repositories)"
            )
        out: list[Candidate] = []
        for m in models:
            repo_id = m.id
            if "/" not in repo_id:
                continue
            if m.siblings is not None and not any(s.rfilename == CONFIG_FILE for s in m.siblings):
                continue  # not an adapter repository
            out.append(Candidate(
                segments=(), root_name=repo_id.split("/", 1)[1], repository=repo_id,
                location=f"hf://{repo_id}",
            ))
        return out

    async def resolve(self, candidate: Candidate) -> Candidate:
        """`candidate` with its files and commit (org listings only know repository names)."""
        if candidate.files is not None:
            return candidate
        for cand in await self._listing(candidate.repository):
            if not cand.segments:
                return cand
        raise SourceNotFound(f"{candidate.location} has no {CONFIG_FILE} at its root")

    async def read_file(self, candidate: Candidate, path: str, *, max_bytes: int) -> bytes:
        """At most `max_bytes` of a small file of the adapter (its config), at the pinned commit,
        cached by content id (see hf_config)."""
        filename = posixpath.join(candidate.subfolder, path) if candidate.segments else path
        listed = next((f for f in candidate.files or () if f.path == path), None)
        what = f"{candidate.location}/{path}"
        return await self._call(
            lambda: read_hub_file(
                endpoint=self.endpoint, repository=candidate.repository, filename=filename,
                revision=candidate.revision, token=self._token, listed=listed,
                max_bytes=max_bytes, cache_dir=self._cache_dir,
                timeout=self._options.request_timeout, what=what,
            ),
            timeout=self._options.request_timeout * 2, what=what,
        )

    # -- staging -----------------------------------------------------------------------------

    async def fetch(self, adapter: DiscoveredAdapter, file: AdapterFile, dest: Path) -> None:
        """Download `file` of `adapter` to `dest` (a path in the staging folder).

        huggingface_hub downloads into `dest.parent/.lora-download/` (resuming a partial download
        left there by an earlier attempt) and the file is then moved to `dest`.
        """
        work = dest.parent / ".lora-download"
        filename = posixpath.join(adapter.subfolder, file.path) if adapter.subfolder else file.path

        def download() -> None:
            local = hf_hub_download(
                adapter.repository, filename, revision=adapter.revision, local_dir=work,
                endpoint=self.endpoint, token=self._token or False,
                etag_timeout=self._options.request_timeout,
            )
            shutil.move(local, dest)

        await self._call(
            download, timeout=self._options.download_timeout,
            what=f"download of {adapter.location}/{file.path}",
        )

    async def aclose(self) -> None:
        return None


def _sibling_files(info: ModelInfo) -> list[tuple[str, AdapterFile]] | None:
    """(repository path, file) of every sibling of a model info; None when a size is missing."""
    siblings = info.siblings or []
    if any(sib.size is None for sib in siblings):
        return None
    out = []
    for sib in siblings:
        lfs: Any = sib.lfs
        out.append((sib.rfilename, AdapterFile(
            path=posixpath.basename(sib.rfilename), size=int(sib.size or 0), etag=sib.blob_id,
            sha256=lfs.sha256 if lfs is not None else None,
        )))
    return out


def _repo_candidates(
    files: list[tuple[str, AdapterFile]], *, repository: str, revision: str | None
) -> list[Candidate]:
    """Adapter folders of one repository listing (files with sizes, at commit `revision`)."""
    folders: dict[str, list[AdapterFile]] = {}
    for path, file in files:
        folders.setdefault(posixpath.dirname(path), []).append(file)
    name = repository.split("/", 1)[1]
    return [
        Candidate(
            segments=tuple(folder.split("/")) if folder else (),
            root_name=name,
            repository=repository,
            location=f"hf://{repository}/{folder}" if folder else f"hf://{repository}",
            files=tuple(sorted(found, key=lambda f: f.path)),
            revision=revision,
        )
        for folder, found in sorted(folders.items())
        if any(f.path == CONFIG_FILE for f in found)
    ]
