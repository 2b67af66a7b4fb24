"""Security headers on every response of the API.

The API serves JSON about guests, their money and their keys: nothing of it may be
cached on the way (``no-store``), sniffed into another type, framed or sent on as a
referrer. The interactive docs (/docs, /redoc) run inline scripts, so they are the
only pages without a Content-Security-Policy; their scripts and styles are the hub's own
copies (/docs-static, no CDN), the same for everyone, so a browser may cache those.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_NO_STORE = (b"cache-control", b"no-store")
_DOCS = ("/docs", "/redoc")
_DOCS_ASSETS = "/docs-static/"  # hub.api.docs.STATIC_URL


class SecurityHeaders:
    """ASGI middleware: adds the headers above unless the response set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = list(_ALWAYS)
        path = str(scope.get("path", ""))
        if not path.startswith(_DOCS):
            added.append(_CSP)
        if not path.startswith(_DOCS_ASSETS):
            added.append(_NO_STORE)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in added if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
