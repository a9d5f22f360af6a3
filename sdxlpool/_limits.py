"""`RequestLimits`: the one ASGI middleware that bounds what a client may send, worker and gateway alike.

* A body over `max_body_bytes` is answered 413 `{"error": "body_too_large", ...}` before anything
  parses it: up front when its Content-Length says so (before the app runs), else as soon as the
  streamed (chunked) bytes counted so far pass the cap.
* A body that stops arriving is answered 408 `{"error": "body_timeout", ...}` when no part of it
  came for `body_timeout` seconds, so a client that sends headers and then a byte a minute (or
  nothing) does not hold a request open forever. Header dribbling, which happens before any ASGI
  code runs, is bounded by the server instead (`sdxlpool._serving`).

Both answers close the connection. Before a 413 the rest of the body is read and dropped, for at
most LINGER_SECONDS (nginx's "lingering close"), so that a client still uploading reads the 413
instead of a connection reset; none of it is kept. WebSocket messages are bounded by the server's
`ws_max_size`, not here.
"""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdxlpool.errors import RequestError

__all__ = ["RequestLimits", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_BODY_TIMEOUT"]

# img2img and extras carry base64 images (a 10 MB photo is ~13.4 MB of base64, and inpainting adds a
# mask): 64 MiB holds several, and the body timeout still bounds a slow sender.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 30.0
LINGER_SECONDS = 2.0  # the rest of an over-cap body is read (and dropped) this long before closing


class _Rejected(HTTPException, RequestError):
    """Raised from `receive`. It must stay an HTTPException: FastAPI's body parsing turns any other
    exception into a 400 "error parsing the body" and lets only HTTPException through, so the app's
    own handler (`sdxlpool._http`) answers it; if nothing does, the middleware answers it itself.
    It is a RequestError too (a request that cannot be served as asked), with the same status."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        HTTPException.__init__(self, status, detail, headers={"Connection": "close"})
        self.status, self.code = status, code


class RequestLimits:
    """Pure ASGI middleware: `app.add_middleware(RequestLimits, max_body_bytes=..., body_timeout=...)`."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT) -> None:
        self.app, self.max_body_bytes, self.body_timeout = app, max_body_bytes, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _discard_body(receive)
            await _answer(send, _too_large(self.max_body_bytes, f"Content-Length {declared}"))
            return

        received, body_done, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body only http.disconnect comes: wait for it as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                raise _Rejected(408, "body_timeout",
                                f"no part of the request body arrived for {self.body_timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    if not body_done:
                        await _discard_body(receive)
                    raise _too_large(self.max_body_bytes, f"more than {self.max_body_bytes} bytes streamed")
            else:
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _Rejected as rejected:
            if started:  # the app answered before reading all of the body: nothing more to say
                raise
            await _answer(send, rejected)


async def _discard_body(receive: Receive) -> None:
    """Read and drop what is left of the body, for up to LINGER_SECONDS: closing a connection with
    unread bytes in it resets it, and a client still sending would often lose the 413 with it.
    Nothing is kept or parsed; a client that sends for longer gets the reset."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    while (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _too_large(limit: int, what: str) -> _Rejected:
    return _Rejected(413, "body_too_large", f"request body: {what}; the limit is {limit} bytes")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP parser has already refused a malformed one
    return None


async def _answer(send: Send, rejected: _Rejected) -> None:
    body = json.dumps({"error": rejected.code, "detail": rejected.detail}).encode()
    await send({"type": "http.response.start", "status": rejected.status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
