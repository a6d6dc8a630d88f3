"""The placement view: `GET /` serves a page that shows the fleet live, read-only.

The page is static HTML, CSS and JavaScript shipped in the package (`server/static/`, no build
step, no library); it reads `/v1/fleet` and `/v1/fleet/adapters` every two seconds (ETags make an
unchanged answer cheap) and builds its DOM with text nodes only, so no name, reason or label can
become markup. A Content-Security-Policy that allows scripts and styles from this origin only is a
second guard. Every URL the page uses is relative, so it also works under a proxy prefix (the API
server's service proxy, `kubectl proxy`).

With `--router-token-file`, `/` asks for the token in a form (`POST /login`) and keeps a session
cookie (auth.py); the static files hold no data and stay open, as do health and metrics.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from lora_controller.server.auth import COOKIE, authorized, set_session, token_matches

STATIC = resources.files("lora_controller.server") / "static"
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
FAILED_MARK = "<!--failed-->"
FAILED_TEXT = '<p class="error" role="alert">That token is not the controller\'s.</p>'


def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


class Page:
    def __init__(self, token: str | None) -> None:
        self.token = token
        self.files = {p.name: _static(p.name) for p in STATIC.iterdir()
                      if p.is_file() and any(p.name.endswith(ext) for ext in TYPES)}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/static/{file}", self.static)

    def _html(self, name: str, failed: bool = False) -> web.Response:
        text = self.files[name].decode()
        if failed:
            text = text.replace(FAILED_MARK, FAILED_TEXT)
        return web.Response(text=text, content_type="text/html",
                            headers=SECURITY_HEADERS)

    async def index(self, request: web.Request) -> web.Response:
        if not authorized(request, self.token):
            return self._html("login.html")  # a form, not an error: browsers log 4xx pages
        return self._html("index.html")

    async def login(self, request: web.Request) -> web.Response:
        if not self.token:
            return _see_other()
        form = await request.post()
        given = form.get("token")
        token = given.strip() if isinstance(given, str) else ""
        if not token or not token_matches(token, self.token):
            return self._html("login.html", failed=True)
        response = _see_other()
        set_session(response, self.token, secure=request.secure)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        response = _see_other()
        response.del_cookie(COOKIE, path="")
        return response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        body = self.files.get(name)
        if body is None or name.endswith(".html"):
            raise web.HTTPNotFound(text=f"no static file {name[:80]!r}")
        ext = name[name.rindex("."):]
        return web.Response(body=body, content_type=TYPES[ext],
                            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


def _see_other() -> web.Response:
    """Back to the page (relative: right under a proxy prefix too)."""
    return web.Response(status=303, headers={"Location": "./", "Cache-Control": "no-store"})
