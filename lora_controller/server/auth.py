"""Who may read the API and the placement view: the router token, from a header or a cookie.

With `--router-token-file`, `/v1/*` and the page at `/` need the token. Routers and `kubectl lora`
send it as `Authorization: Bearer TOKEN`, or as `X-Lora-Router-Token: TOKEN` when the
`Authorization` header is taken (through the API server's service proxy, which authenticates the
caller with that header and removes it). A browser logs in once through the page's form and then
sends a cookie: not the token itself but an HMAC of it, so the cookie is worth nothing once the
token changes, and the token never appears in a URL, a page or a log. The cookie is HttpOnly and
SameSite=Strict, and it opens reads only (GET and HEAD): anything that changes or computes on
request (`POST /v1/plan`) needs the token in a header, so another site cannot make a logged-in
browser send it. Comparisons take constant time.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

COOKIE = "lora_view"
TOKEN_HEADER = "X-Lora-Router-Token"
_SESSION = b"lora-controller placement view session v1"
_READS = frozenset({"GET", "HEAD"})


def session_value(token: str) -> str:
    """The cookie's value for `token` (an HMAC: the cookie does not carry the token)."""
    return hmac.new(token.encode(), _SESSION, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def token_matches(given: str, token: str) -> bool:
    """A token typed into the login form is the controller's (constant time)."""
    return _same(given, token)


def header_authorized(request: web.Request, token: str) -> bool:
    """The token came in a header."""
    bearer = request.headers.get("Authorization", "")
    return _same(bearer, f"Bearer {token}") or _same(request.headers.get(TOKEN_HEADER, ""), token)


def authorized(request: web.Request, token: str | None) -> bool:
    """Whether `request` may be answered: no token is set, it carries the token in a header, or
    it is a read with the view's session cookie."""
    if not token:
        return True
    if header_authorized(request, token):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return request.method in _READS and bool(cookie) and _same(cookie, session_value(token))


def set_session(response: web.StreamResponse, token: str, *, secure: bool) -> None:
    """Log a browser in: the session cookie, for this browser session only, never sent
    cross-site, unreadable by scripts. No Path: it defaults to where the page is served, which
    keeps it working under a proxy prefix."""
    response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="Strict",
                        secure=secure, path="")  # "": no Path attribute
