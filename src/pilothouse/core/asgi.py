"""ASGI middleware: request bodies over a size limit get a 413 with the JSON error body.

A body whose Content-Length is over the limit is refused before routing. A body without one
(chunked) is counted as the route reads it; past the limit, reading raises `BodyTooLarge`, an
HTTP exception the app's error handler renders like every other error. FastAPI's own
`max_body_size` was not used: a route that does not read the body would answer it with
Starlette's plain-text 413, and it cannot sit behind this middleware.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_message(limit: int) -> str:
    """The message of every 413."""
    return f"the request body is larger than {limit} bytes (setting PILOTHOUSE_MAX_BODY_BYTES)"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


class BodyLimit:
    """Refuse request bodies over `max_bytes`: declared ones up front, chunked ones as read."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        #: Paths that take larger bodies (a scan report upload), streamed by their route.
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(
            {
                "error": "payload_too_large",
                "message": too_large_message(limit),
                "detail": None,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
