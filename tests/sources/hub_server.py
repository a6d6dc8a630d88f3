"""A small HuggingFace Hub on loopback, for tests that drive the real huggingface_hub client.

It serves what the client calls to list an author's models, read a repository's info and tree at a
revision, and download files (HEAD then GET on /resolve, with the headers the client relies on:
X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size, Range). Private repositories need a bearer
token granted to them, gated ones an approved token; errors carry the X-Error-Code headers the
client maps to its exceptions. It never sends Xet headers, so the client stays on plain HTTP.

Fault knobs: `go_down()` / `come_up()` (connection refused on the same port), `drop_after` /
`drops` (cut the connection after N body bytes of a download), `fail_downloads` (answer N
download GETs with 503), `chunk_delay` (slow downloads), and `bytes_sent` to watch a download
progress. `sizes`: "blobs" (every listing has sizes), "tree" (`?blobs=true` gives none, the
tree listing does: a hub that is HF-compatible in part) or "none" (no listing has sizes).
Hostile knobs: `oversize["repo/path"] = N` streams N zero bytes after the file's own,
chunked (its listing and HEAD keep the true size: a hub that lies about lengths).

    hub = HubServer()
    hub.add_repo("org/adapters", {"a/adapter_config.json": b"...", ...}, private=True,
                 tokens={"hf_secret"})
    url = await hub.start()      # set HF_ENDPOINT=url
    ...
    await hub.stop()
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from aiohttp import web

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:"
            f"{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n").encode()


@dataclass
class HubRepo:
    repo_id: str
    author: str
    private: bool = False
    gated: bool = False
    tokens: set[str] = field(default_factory=set)  # may read a private repo / approved if gated
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.commits:
            return revision
        return None


class HubServer:
    """The fake hub (see module doc). Not thread-safe: use it from the test's event loop."""

    def __init__(self, *, host: str = "127.0.0.1", page_size: int = 50) -> None:
        self.host = host
        self.page_size = page_size
        self.repos: dict[str, HubRepo] = {}
        self.tokens: set[str] = set()  # every valid token
        self.requests: list[tuple[str, str]] = []
        self.bytes_sent: dict[str, int] = {}  # "repo/path" -> body bytes sent (all GETs)
        self.drop_after: int | None = None
        self.drops: int | None = None  # how many downloads to cut; None: all of them
        self.chunk_delay: float = 0.0
        self.fail_downloads: int = 0  # answer this many download GETs with 503
        self.chunk_size: int = 16 * 1024
        self.oversize: dict[str, int] = {}
        self.sizes = "blobs"
        self._counter = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port: int = 0

    # -- content ----------------------------------------------------------------------------

    def add_token(self, token: str) -> None:
        self.tokens.add(token)

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        private: bool = False,
        gated: bool = False,
        tokens: Iterable[str] = (),
        author: str | None = None,
        branch: str = "main",
        tags: Iterable[str] = (),
    ) -> str:
        """Create a repository with one commit on `branch` (and `tags` on it); returns the sha."""
        repo = HubRepo(repo_id=repo_id, author=author or repo_id.split("/")[0], private=private,
                       gated=gated, tokens=set(tokens))
        self.tokens |= repo.tokens
        self.repos[repo_id] = repo
        sha = self.commit(repo_id, files, branch=branch, replace=True)
        for tag in tags:
            repo.refs[tag] = sha
        return sha

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        branch: str = "main",
        delete: Iterable[str] = (),
        replace: bool = False,
    ) -> str:
        """A new commit on `branch` (created from main if new): `files` added or changed,
        `delete` removed; returns its sha."""
        repo = self.repos[repo_id]
        parent = repo.refs.get(branch, repo.refs.get("main"))  # a new branch starts from main
        base = {} if replace or parent is None else dict(repo.commits[parent])
        base.update(files)
        for path in delete:
            base.pop(path, None)
        self._counter += 1
        digest = hashlib.sha1(f"{repo_id}\0{self._counter}".encode(), usedforsecurity=False)
        for path in sorted(base):
            digest.update(f"{path}\0{git_blob_sha1(base[path])}\n".encode())
        sha = digest.hexdigest()
        repo.commits[sha] = base
        repo.refs[branch] = sha
        return sha

    def tag(self, repo_id: str, tag: str, revision: str = "main") -> None:
        repo = self.repos[repo_id]
        sha = repo.resolve(revision)
        assert sha is not None, revision
        repo.refs[tag] = sha

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._listen()
        return self.url

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            server = self._site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def go_down(self) -> None:
        """Stop listening and drop open connections: clients get 'connection refused' (or a
        reset on a kept-alive connection) until `come_up`."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self._runner.server if self._runner is not None else None
        for handler in list(server.connections if server is not None else []):
            handler.force_close()
            if handler.transport is not None:
                handler.transport.close()

    async def come_up(self) -> None:
        if self._site is None:
            await self._listen()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        self.requests.append((request.method, request.raw_path))
        segs = [unquote(s) for s in raw_path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        token = _bearer(request)
        if token is not None and token not in self.tokens:
            return _error(401, None, message="Invalid credentials in Authorization header")
        if segs[:2] == ["api", "models"]:
            if len(segs) == 2:
                return self._list_models(request, query, token)
            if len(segs) >= 4:
                repo_id = f"{segs[2]}/{segs[3]}"
                rest = segs[4:]
                if not rest:
                    return self._model_info(repo_id, "main", query, token)
                if rest[0] == "revision" and len(rest) == 2:
                    return self._model_info(repo_id, rest[1], query, token)
                if rest[0] == "tree" and len(rest) >= 2:
                    path = "/".join(rest[2:]).strip("/")
                    return self._tree(request, repo_id, rest[1], path, query, token)
        if len(segs) >= 5 and segs[2] == "resolve":
            repo_id = f"{segs[0]}/{segs[1]}"
            return await self._resolve(request, repo_id, segs[3], "/".join(segs[4:]), token)
        return _error(404, None, message="not found")

    def _visible(self, repo: HubRepo, token: str | None) -> bool:
        return not repo.private or (token is not None and token in repo.tokens)

    def _repo_or_error(
        self, repo_id: str, token: str | None
    ) -> tuple[HubRepo | None, web.Response | None]:
        repo = self.repos.get(repo_id)
        if repo is None or not self._visible(repo, token):
            status = 401 if token is None else 404
            return None, _error(status, "RepoNotFound", message="Repository not found")
        return repo, None

    def _list_models(
        self, request: web.Request, query: dict[str, str], token: str | None
    ) -> web.Response:
        repos = [r for r in sorted(self.repos.values(), key=lambda r: r.repo_id)
                 if self._visible(r, token)]
        if "author" in query:
            repos = [r for r in repos if r.author == query["author"]]
        if "search" in query:
            repos = [r for r in repos if query["search"].lower() in r.repo_id.lower()]
        full = query.get("full", "").lower() == "true"
        start = int(query.get("cursor", "0"))
        page = repos[start:start + self.page_size]
        body = [self._info_body(r, r.refs["main"] if "main" in r.refs else next(iter(
            r.refs.values())), siblings=full, blobs=False) for r in page]
        headers = {}
        if start + self.page_size < len(repos):
            params = {k: v for k, v in query.items() if k != "cursor"}
            params["cursor"] = str(start + self.page_size)
            headers["Link"] = f'<{self.url}/api/models?{urlencode(params)}>; rel="next"'
        return web.json_response(body, headers=headers)

    def _info_body(
        self, repo: HubRepo, sha: str, *, siblings: bool, blobs: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "_id": hashlib.md5(repo.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.author, "sha": sha,
            "private": repo.private, "gated": "auto" if repo.gated else False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": ["peft", "safetensors"],
            "library_name": "peft", "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
        }
        if siblings:
            sib = []
            for path, data in sorted(repo.commits[sha].items()):
                entry: dict[str, Any] = {"rfilename": path}
                if blobs and self.sizes == "blobs":
                    entry.update(self._file_meta(path, data))
                sib.append(entry)
            body["siblings"] = sib
        return body

    def _file_meta(self, path: str, data: bytes) -> dict[str, Any]:
        if path.endswith(LFS_SUFFIXES):
            pointer = lfs_pointer(data)
            return {"size": len(data), "blobId": git_blob_sha1(pointer), "lfs": {
                "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "pointerSize": len(pointer)}}
        return {"size": len(data), "blobId": git_blob_sha1(data)}

    def _model_info(
        self, repo_id: str, revision: str, query: dict[str, str], token: str | None
    ) -> web.Response:
        repo, err = self._repo_or_error(repo_id, token)
        if err is not None or repo is None:
            return err or _error(404, "RepoNotFound")
        sha = repo.resolve(revision)
        if sha is None:
            return _error(404, "RevisionNotFound", message=f"Invalid rev id: {revision}")
        blobs = query.get("blobs", "").lower() == "true"
        return web.json_response(self._info_body(repo, sha, siblings=True, blobs=blobs))

    def _tree(
        self, request: web.Request, repo_id: str, revision: str, path: str,
        query: dict[str, str], token: str | None,
    ) -> web.Response:
        repo, err = self._repo_or_error(repo_id, token)
        if err is not None or repo is None:
            return err or _error(404, "RepoNotFound")
        sha = repo.resolve(revision)
        if sha is None:
            return _error(404, "RevisionNotFound", message=f"Invalid rev id: {revision}")
        files = repo.commits[sha]
        recursive = query.get("recursive", "").lower() == "true"
        base = f"{path}/" if path else ""
        if path and path in files:
            return _error(404, "EntryNotFound", commit=sha, message=f"{path} is a file")
        entries: dict[str, dict[str, Any]] = {}
        for fpath, data in files.items():
            if not fpath.startswith(base):
                continue
            rel = fpath[len(base):].split("/")
            for depth in range(1, len(rel)):
                dpath = base + "/".join(rel[:depth])
                if recursive or depth == 1:
                    entries[dpath] = {"type": "directory", "oid": hashlib.sha1(
                        dpath.encode(), usedforsecurity=False).hexdigest(), "size": 0,
                        "path": dpath}
            if recursive or len(rel) == 1:
                entries[fpath] = {"type": "file", "oid": git_blob_sha1(data), "path": fpath,
                                  **{k: v for k, v in self._file_meta(fpath, data).items()
                                     if k in ("size", "lfs") and self.sizes != "none"}}
                if "lfs" in entries[fpath]:
                    lfs = entries[fpath]["lfs"]
                    entries[fpath]["lfs"] = {"oid": lfs["sha256"], "size": lfs["size"],
                                             "pointerSize": lfs["pointerSize"]}
        if path and not entries:
            return _error(404, "EntryNotFound", commit=sha, message=f"{path} does not exist")
        items = [entries[k] for k in sorted(entries)]
        start = int(query.get("cursor", "0"))
        page = items[start:start + self.page_size]
        headers = {}
        if start + self.page_size < len(items):
            params = {k: v for k, v in query.items() if k != "cursor"}
            params["cursor"] = str(start + self.page_size)
            raw = request.raw_path.partition("?")[0]
            headers["Link"] = f'<{self.url}{raw}?{urlencode(params)}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def _resolve(
        self, request: web.Request, repo_id: str, revision: str, path: str, token: str | None
    ) -> web.StreamResponse:
        repo, err = self._repo_or_error(repo_id, token)
        if err is not None or repo is None:
            return err or _error(404, "RepoNotFound")
        if repo.gated and (token is None or token not in repo.tokens):
            return _error(401 if token is None else 403, "GatedRepo",
                          message=f"Access to model {repo_id} is restricted")
        sha = repo.resolve(revision)
        if sha is None:
            return _error(404, "RevisionNotFound", message=f"Invalid rev id: {revision}")
        data = repo.commits[sha].get(path)
        if data is None:
            return _error(404, "EntryNotFound", commit=sha, message=f"{path} does not exist")
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if path.endswith(LFS_SUFFIXES):
            etag = hashlib.sha256(data).hexdigest()
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data)),
                            "ETag": f'"{etag}"'})
        else:
            headers["ETag"] = f'"{git_blob_sha1(data)}"'
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return web.Response(status=200, headers=headers)
        if self.fail_downloads > 0:
            self.fail_downloads -= 1
            return _error(503, None, message="Service temporarily unavailable")
        start = 0
        rng = request.headers.get("Range", "")
        if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
            start = min(int(rng[6:].split("-")[0]), len(data))
        body = data[start:]
        key = f"{repo_id}/{path}"
        if key in self.oversize:
            return await self._stream_oversized(request, headers, body, key)
        resp = web.StreamResponse(status=206 if start else 200, headers=headers)
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        resp.content_length = len(body)
        await resp.prepare(request)
        cut = self._cut_point(len(body))
        sent = 0
        while sent < len(body):
            chunk = body[sent:sent + self.chunk_size]
            if cut is not None and sent + len(chunk) >= cut:
                chunk = body[sent:cut]
                await resp.write(chunk)
                self.bytes_sent[key] = self.bytes_sent.get(key, 0) + len(chunk)
                transport = request.transport
                if transport is not None:
                    transport.abort()
                return resp
            await resp.write(chunk)
            sent += len(chunk)
            self.bytes_sent[key] = self.bytes_sent.get(key, 0) + len(chunk)
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await resp.write_eof()
        return resp

    async def _stream_oversized(
        self, request: web.Request, headers: dict[str, str], body: bytes, key: str
    ) -> web.StreamResponse:
        """`body` then `oversize[key]` zero bytes, chunked, until the client stops reading."""
        resp = web.StreamResponse(status=200, headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        extra = self.oversize[key]
        try:
            await resp.write(body)
            self.bytes_sent[key] = self.bytes_sent.get(key, 0) + len(body)
            while extra > 0:
                n = min(self.chunk_size * 4, extra)
                await resp.write(b"\0" * n)
                extra -= n
                self.bytes_sent[key] += n
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp

    def _cut_point(self, size: int) -> int | None:
        if self.drop_after is None or size <= 0:
            return None
        if self.drops is not None:
            if self.drops <= 0:
                return None
            self.drops -= 1
        return min(self.drop_after, size - 1)


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def _error(
    status: int, code: str | None, *, message: str = "", commit: str | None = None
) -> web.Response:
    headers = {}
    if code:
        headers["X-Error-Code"] = code
    if message:
        headers["X-Error-Message"] = message
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message or code or "error"}, status=status,
                             headers=headers)

