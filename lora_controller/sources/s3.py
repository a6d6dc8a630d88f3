"""S3 source through s3fs (so fsspec): list a prefix, read configs, download files.

`repository: s3://bucket/prefix` names a folder; every folder below it (or it itself) holding
adapter_config.json is an adapter made of the files directly in that folder. Keys come from the
Secret when one is given, else from the default AWS credential chain (environment, web identity /
IRSA, instance role). `endpoint` points at S3-compatible stores. s3fs is used through its async
API, one filesystem per source (credentials may rotate) and every call bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import s3fs

from lora_controller.sources.bounded import CHUNK, too_much
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.errors import (
    AccessDenied,
    InvalidAdapterConfig,
    InvalidSource,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
    StagingFailed,
    redact,
)
from lora_controller.sources.model import (
    CONFIG_FILE,
    AdapterFile,
    Candidate,
    DiscoveredAdapter,
    SourceOptions,
)

T = TypeVar("T")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without surrounding '/') of s3://bucket/prefix."""
    if not uri.startswith("s3://"):
        raise InvalidSource(f"repository {uri!r} must look like s3://BUCKET/PREFIX")
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise InvalidSource(f"repository {uri!r} names no bucket")
    return bucket, prefix.strip("/")


class S3Source:
    """One s3://bucket/prefix read with one set of credentials (or the default chain)."""

    notes: tuple[str, ...] = ()

    def __init__(
        self,
        repository: str,
        *,
        endpoint: str | None,
        region: str | None,
        credentials: SourceCredentials | None,
        options: SourceOptions,
    ) -> None:
        self.bucket, self.prefix = split_s3_uri(repository)
        self.endpoint = endpoint
        self.region = region
        self._options = options
        self._secret_name = credentials.secret_name if credentials else ""
        self._secrets = credentials.secrets() if credentials else ()
        has_keys = bool(credentials and credentials.aws_access_key_id)
        client_kwargs: dict[str, Any] = {}
        if region:
            client_kwargs["region_name"] = region
        self._fs = s3fs.S3FileSystem(
            key=credentials.aws_access_key_id if has_keys and credentials else None,
            secret=credentials.aws_secret_access_key if has_keys and credentials else None,
            token=credentials.aws_session_token if has_keys and credentials else None,
            endpoint_url=endpoint,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": min(options.request_timeout, 10.0),
                "read_timeout": options.request_timeout,
                "retries": {"max_attempts": 3, "mode": "standard"},
            },
            asynchronous=True,
            skip_instance_cache=True,
            use_listings_cache=False,
            max_concurrency=1,
        )
        self._fs.retries = 3  # s3fs's own retries of throttling and dropped reads
        self._session: Any = None

    def __repr__(self) -> str:
        return f"S3Source('s3://{self.bucket}/{self.prefix}', endpoint={self.endpoint!r})"

    @property
    def root_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    async def _call(self, aw: Awaitable[T], *, timeout: float, what: str) -> T:
        try:
            if self._session is None:
                self._session = await asyncio.wait_for(self._fs.set_session(), timeout)
            return await asyncio.wait_for(aw, timeout)
        except TimeoutError:
            raise SourceUnreachable(f"{what}: no answer within {timeout:g}s") from None
        except SourceError:
            raise
        except Exception as exc:
            raise self._map_error(exc, what=what) from None
        finally:
            if asyncio.iscoroutine(aw):
                aw.close()  # never awaited when set_session failed: avoid a warning

    def _map_error(self, exc: BaseException, *, what: str) -> SourceError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = redact(text, self._secrets)
        who = (f"the keys in Secret {self._secret_name!r}" if self._secrets
               else "the default AWS credential chain")
        code = ""
        for e in (exc, exc.__cause__, exc.__context__):
            response = getattr(e, "response", None)
            if isinstance(response, dict):
                code = str(response.get("Error", {}).get("Code", ""))
                break
        if isinstance(exc, PermissionError) or code in (
            "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "401",
            "ExpiredToken", "InvalidToken", "AllAccessDisabled",
        ):
            return AccessDenied(f"{what}: access denied for {who} ({detail})")
        if code in ("NoSuchBucket", "NoSuchKey", "404") or isinstance(exc, FileNotFoundError):
            return SourceNotFound(f"{what}: not found ({detail})")
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return AccessDenied(
                f"{what}: no AWS credentials found: set credentialsSecretRef, or give the "
                f"controller an IAM role (IRSA, instance profile)"
            )
        return SourceUnreachable(f"{what}: {type(exc).__name__} ({detail})")

    def _key(self, *parts: str) -> str:
        return posixpath.join(self.bucket, *[p for p in parts if p])

    async def candidates(self) -> list[Candidate]:
        """Folders under the prefix holding adapter_config.json, with their files."""
        root = self._key(self.prefix)
        found: dict[str, dict[str, Any]] = await self._call(
            self._fs._find(root, detail=True),
            timeout=self._options.listing_timeout,
            what=f"listing {self.root_uri}",
        )
        base = root.rstrip("/") + "/"
        entries = {k: v for k, v in found.items()
                   if k.startswith(base) and v.get("type", "file") == "file"}
        if not entries:
            await self._check_bucket()
            raise SourceNotFound(f"{self.root_uri} holds no objects (check bucket and prefix)")
        folders: dict[str, list[AdapterFile]] = {}
        for key, info in entries.items():
            folder, name = posixpath.split(key[len(base):])
            if not name:
                continue
            folders.setdefault(folder, []).append(AdapterFile(
                path=name, size=int(info.get("size") or 0),
                etag=str(info.get("ETag") or info.get("etag") or "").strip('"') or None,
            ))
        root_name = posixpath.basename(self.prefix) or self.bucket
        out = []
        for folder, files in sorted(folders.items()):
            if not any(f.path == CONFIG_FILE for f in files):
                continue
            out.append(Candidate(
                segments=tuple(folder.split("/")) if folder else (),
                root_name=root_name,
                repository=self.root_uri,
                location=posixpath.join(self.root_uri, folder) if folder else self.root_uri,
                files=tuple(sorted(files, key=lambda f: f.path)),
            ))
        return out

    async def _check_bucket(self) -> None:
        """Raise SourceNotFound/AccessDenied when the bucket itself is the problem."""
        exists = await self._call(
            self._fs._exists(self.bucket), timeout=self._options.request_timeout,
            what=f"bucket s3://{self.bucket}",
        )
        if not exists:
            raise SourceNotFound(f"bucket s3://{self.bucket} does not exist")

    async def resolve(self, candidate: Candidate) -> Candidate:
        return candidate

    def _object(self, repository: str, subfolder: str, path: str) -> str:
        bucket, prefix = split_s3_uri(repository)
        return posixpath.join(bucket, *[p for p in (prefix, subfolder, path) if p])

    async def read_file(self, candidate: Candidate, path: str, *, max_bytes: int) -> bytes:
        """At most `max_bytes` of an object; an answer longer than that fails unread."""
        key = self._object(candidate.repository, candidate.subfolder, path)
        what = f"{candidate.location}/{path}"
        chunks: list[bytes] = []
        await self._call(
            self._stream(key, max_bytes=max_bytes, write=chunks.append, what=what,
                         error=InvalidAdapterConfig),
            timeout=self._options.request_timeout, what=what,
        )
        return b"".join(chunks)

    async def fetch(self, adapter: DiscoveredAdapter, file: AdapterFile, dest: Path) -> None:
        """Download one object to `dest`, stopping one byte past its listed size."""
        key = self._object(adapter.repository, adapter.subfolder, file.path)
        where = f"{adapter.location}/{file.path}"
        with dest.open("wb") as out:
            await self._call(
                self._stream(key, max_bytes=file.size, write=out.write,
                             what=f"{where} does not match discovery", error=StagingFailed),
                timeout=self._options.download_timeout, what=f"download of {where}",
            )

    async def _stream(
        self, key: str, *, max_bytes: int, write: Callable[[bytes], object], what: str,
        error: type[SourceError],
    ) -> None:
        """GET `key` (a Range of the listed size plus one byte) into `write`, never trusting the
        server: a `Content-Length` or a body longer than `max_bytes` fails before or while
        reading, and the connection is dropped."""
        bucket, obj, _ = self._fs.split_path(key)
        ranged = {"Range": f"bytes=0-{max_bytes}"} if max_bytes > 0 else {}
        resp = await self._fs._call_s3("get_object", Bucket=bucket, Key=obj, **ranged)
        body = resp["Body"]
        try:
            length = resp.get("ContentLength")
            if isinstance(length, int) and length > max_bytes:
                raise error(too_much(what, max_bytes))
            total = 0
            while chunk := await body.read(min(CHUNK, max_bytes + 1 - total)):
                total += len(chunk)
                if total > max_bytes:
                    raise error(too_much(what, max_bytes))
                write(chunk)
        finally:
            body.close()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                await asyncio.wait_for(session.close(), 5)
            except Exception:  # closing is best effort
                pass
