"""The request guards of ``cxrsearch serve`` (pure ASGI middleware, outermost first):

1. :class:`TokenGuard`: with a token configured, every request must carry it (``Authorization:
   Bearer``, the ``X-Cxrsearch-Token`` header, or the cookie a ``?token=`` link sets once); compared
   in constant time. Without a token the server only ever binds loopback (:mod:`.settings`).
2. :class:`HostGuard`: on loopback, only ``Host: localhost / 127.0.0.1 / [::1]`` is answered (a web
   page on another site cannot reach the server through DNS rebinding); a ``POST`` whose ``Origin``
   is another site is refused (no cross-site form posts).
3. :class:`BodyLimit`: request bodies above the upload cap are refused with 413 while they arrive,
   before anything is stored or decoded.

Every response gets headers that keep pages private: no caching of pages, no referrer, no framing,
a content security policy allowing this server's own CSS and images only (no script at all).
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE = "cxrsearch_token"
HEADER = "x-cxrsearch-token"
CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _plain(send: Send, status: int, text: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = (text + "\n").encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """Adds the privacy headers to every response (pages: ``no-store``)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", CSP.encode()),
                ]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class TokenGuard:
    """Refuses (401) every request without the token; ``?token=`` on a page sets the cookie and
    redirects to the same address without it (so it does not stay in the address bar)."""

    def __init__(self, app: App, token: str | None) -> None:
        self.app = app
        self.token = token

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8"), str(self.token).encode("utf-8"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None:
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self._ok(auth[7:].strip()):
            return await self.app(scope, receive, send)
        if self._ok(headers.get(HEADER)):
            return await self.app(scope, receive, send)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is no token
            cookie = SimpleCookie()
        if COOKIE in cookie and self._ok(cookie[COOKIE].value):
            return await self.app(scope, receive, send)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and self._ok(given[-1]) and scope.get("method") == "GET":
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("path", "/") + (f"?{rest}" if rest else "")
            morsel = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await _plain(
                send,
                303,
                "see other",
                [(b"location", location.encode("latin-1")), (b"set-cookie", morsel.encode("latin-1"))],
            )
            return
        await _plain(
            send,
            401,
            "this cxrsearch server needs its token: open the link with ?token=..., "
            "or send Authorization: Bearer <token>",
            [(b"www-authenticate", b"Bearer")],
        )


class HostGuard:
    """Answers only the host names in ``hosts`` (``None``: any) and refuses cross-site POSTs."""

    def __init__(self, app: App, hosts: Iterable[str] | None) -> None:
        self.app = app
        self.hosts = None if hosts is None else {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.hosts is not None and name.lower() not in self.hosts:
            return await _plain(send, 421, "unexpected Host header: this server answers on its loopback address only")
        origin = headers.get("origin")
        if scope.get("method") not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null":
            origin_host = origin.split("://", 1)[-1].rstrip("/")
            if origin_host.lower() != host.lower():
                return await _plain(send, 403, "cross-site request refused")
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses (413) request bodies above ``limit`` bytes, by ``Content-Length`` before reading and
    by counting while reading (chunked uploads)."""

    def __init__(self, app: App, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"upload too large: the limit is {self.limit // (1024 * 1024)} MiB"
        length = _headers(scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _plain(send, 413, message)
        seen = 0
        over = False
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal seen, over
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise _TooLarge()
            return event

        async def tracked(event: dict[str, Any]) -> None:
            nonlocal started
            if over:  # the app's own error response for the aborted body: replaced by the 413
                return
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, counted, tracked)
        if over and not started:
            await _plain(send, 413, message)
