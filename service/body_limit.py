"""Pure ASGI middleware that bounds a request body in size and in time: a client may not
make the daemon read more than ``max_body_bytes``, nor wait on it forever."""

from __future__ import annotations

import asyncio
import sys

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_CLOSE = {"Connection": "close"}  # the rest of the body is not read: end the connection


async def _before(deadline: float, receive: Receive, loop: asyncio.AbstractEventLoop) -> Message:
    """``await receive()``, ``asyncio.TimeoutError`` past ``deadline`` (loop time)."""
    if sys.version_info >= (3, 11):  # no task per call, as wait_for makes
        async with asyncio.timeout_at(deadline):
            return await receive()
    return await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        detail = f"request body is larger than the limit of {limit} bytes"
        super().__init__(413, detail, headers=_CLOSE)


class BodyTimeoutError(HTTPException):
    def __init__(self, seconds: float) -> None:
        detail = f"the request body did not arrive within {seconds:g} s"
        super().__init__(408, detail, headers=_CLOSE)


class BodyLimit:
    """Pure ASGI middleware: 413 once a body passes ``max_bytes``, counted while it streams
    (a declared Content-Length over the limit is refused before reading anything), and
    408 when the whole body has not arrived ``timeout_s`` after the app first asks for it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = whole = False
        deadline: float | None = None

        async def counted() -> Message:
            nonlocal seen, whole, deadline
            if whole:  # later reads only wait for a disconnect: no deadline
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.timeout_s
            try:
                message = await _before(deadline, receive, loop)
            except asyncio.TimeoutError:
                raise BodyTimeoutError(self.timeout_s) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except (BodyTooLargeError, BodyTimeoutError) as exc:
            if started:
                raise
            await self._refuse(scope, receive, send, exc)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: HTTPException | None = None
    ) -> None:
        error = error or BodyTooLargeError(self.max_bytes)
        reply = JSONResponse({"detail": error.detail}, error.status_code, error.headers)
        await reply(scope, receive, send)
