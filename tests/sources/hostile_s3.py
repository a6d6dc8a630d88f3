"""An S3 endpoint on loopback that lies: it lists objects at one size and streams another.

Just enough of S3 for s3fs and aiobotocore (path-style ListObjectsV2, HEAD and GET of objects,
HEAD of the bucket), signatures not checked. Each object has the bytes it lists (`listed`) and
what a GET streams: the listed bytes, or `stream_bytes` zero bytes sent chunked (no length), or a
`Content-Length` header claiming `claim_length`. `sent` counts the body bytes actually written,
so a test can tell that the client stopped reading.

    s3 = HostileS3()
    s3.put("bucket", "p/a/adapter_config.json", b"{...}", stream_bytes=1 << 30)
    url = await s3.start()   # adapterSource.endpoint
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from xml.sax.saxutils import escape

from aiohttp import web

CHUNK = 64 * 1024


@dataclass
class HostileObject:
    listed: bytes
    stream_bytes: int | None = None  # stream this many zero bytes instead (chunked)
    claim_length: int | None = None  # send this Content-Length on GET and HEAD

    @property
    def etag(self) -> str:
        return hashlib.md5(self.listed, usedforsecurity=False).hexdigest()


class HostileS3:
    """See module doc."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], HostileObject] = {}
        self.sent: dict[str, int] = {}  # key -> body bytes written
        self.requests: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def put(self, bucket: str, key: str, data: bytes, *, stream_bytes: int | None = None,
            claim_length: int | None = None) -> None:
        self.objects[(bucket, key)] = HostileObject(data, stream_bytes, claim_length)

    def put_files(self, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            self.put(bucket, f"{prefix}/{name}", data)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        bucket, _, key = request.path.lstrip("/").partition("/")
        if not key:
            if request.method == "HEAD":
                return web.Response(status=200)
            return self._list(bucket, request.query.get("prefix", ""))
        obj = self.objects.get((bucket, key))
        if obj is None:
            return web.Response(status=404, content_type="application/xml", text=(
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
                f"<Message>no such key</Message><Key>{escape(key)}</Key></Error>"))
        headers = {"ETag": f'"{obj.etag}"', "Content-Type": "application/octet-stream",
                   "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
        if request.method == "HEAD":
            length = obj.claim_length if obj.claim_length is not None else len(obj.listed)
            return web.Response(status=200, headers={**headers, "Content-Length": str(length)})
        return await self._stream(request, key, obj, headers)

    def _list(self, bucket: str, prefix: str) -> web.Response:
        items = sorted((k, o) for (b, k), o in self.objects.items()
                       if b == bucket and k.startswith(prefix))
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><LastModified>2024-01-01T00:00:00.000Z"
            f"</LastModified><ETag>&quot;{o.etag}&quot;</ETag><Size>{len(o.listed)}</Size>"
            f"<StorageClass>STANDARD</StorageClass></Contents>" for k, o in items)
        body = ("<?xml version='1.0' encoding='UTF-8'?>"
                "<ListBucketResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>"
                f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
                f"<KeyCount>{len(items)}</KeyCount><MaxKeys>1000</MaxKeys>"
                f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>")
        return web.Response(status=200, content_type="application/xml", text=body)

    async def _stream(self, request: web.Request, key: str, obj: HostileObject,
                      headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=headers)
        if obj.claim_length is not None:
            resp.content_length = obj.claim_length
        elif obj.stream_bytes is not None:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(obj.listed)
        await resp.prepare(request)
        total = obj.stream_bytes if obj.stream_bytes is not None else (
            obj.claim_length if obj.claim_length is not None else len(obj.listed))
        body = obj.listed if obj.stream_bytes is None and obj.claim_length is None else None
        sent = 0
        try:
            while sent < total:
                n = min(CHUNK, total - sent)
                chunk = body[sent:sent + n] if body is not None else b"\0" * n
                await resp.write(chunk)
                sent += n
                self.sent[key] = self.sent.get(key, 0) + n
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client stopped reading: what a careful client does
        return resp
