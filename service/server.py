"""The HTTP server around the app: uvicorn's httptools protocol (h11 where httptools is not
installed) with bounds on what idle or slow clients can hold (connections, and the time
and bytes to send a request head).

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and answers 503 past
``limit_concurrency``, but a connection that never sends a whole request head is kept
forever, and each holds a file descriptor: enough of them starve the WAL and checkpoints.
Here such a connection is closed after ``header_timeout_s``, and one past
``max_connections`` as soon as it is accepted. httptools, unlike h11, puts no bound on a
request head's size: a head past ``MAX_HEAD_BYTES`` (h11's own bound) is answered 431 and
the connection closed. The body has its own deadline (:class:`service.body_limit.BodyLimit`).
httptools parses a request in C: 0.3 ms less CPU per request than h11 (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: h11, which bounds the head itself
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

log = logging.getLogger("edgecl.server")

#: The most bytes a request head (request line and headers) may take: h11's default bound.
MAX_HEAD_BYTES = 16 * 1024


class HeadBounds(asyncio.Protocol):
    """A request-head deadline, a head size bound and a hard connection cap, mixed into
    uvicorn's HTTP protocols (which set ``cycle``, ``connections``, ``loop``,
    ``transport``); :func:`protocol` makes one with the settings' bounds."""

    header_timeout_s = 10.0
    max_open = 1000
    max_head_bytes = MAX_HEAD_BYTES
    _last_refusal = 0.0  # class-wide: at most one log line per second
    cycle: Any
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaited: object = None  # the cycle seen when the deadline was set
        self._head_bytes = 0  # bytes received since then, while no head completed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_open:
            now = time.monotonic()
            if now - HeadBounds._last_refusal > 1.0:
                HeadBounds._last_refusal = now
                log.warning("%d connections are open: closing new ones", len(self.connections))
            transport.abort()
            return
        self._await_head()

    def _await_head(self) -> None:
        self._cancel()
        self._awaited, self._head_bytes = self.cycle, 0
        self._deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is None:
            return
        if self.cycle is not self._awaited:
            self._cancel()  # a whole request head arrived: the body has its own deadline
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._cancel()
            self._refuse_head()  # httptools would buffer it whole

    def _refuse_head(self) -> None:
        msg = f"the request head is larger than {self.max_head_bytes} bytes".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(msg)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + msg
        )
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # may start a pipelined request
        cycle = self.cycle
        if (cycle is None or cycle.response_complete) and not self.transport.is_closing():
            self._await_head()  # nothing received or running: the next head is awaited

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)


class BoundedH11Protocol(HeadBounds, H11Protocol):
    """uvicorn's h11 protocol with :class:`HeadBounds` (h11 bounds a head's size itself)."""


class _HeadTooLarge(Exception):
    """Raised from httptools' parser callbacks; uvicorn answers its errors with a 400,
    which :meth:`BoundedHttpTools.send_400_response` turns into the 431 it is."""


class _HttpToolsHeadSize:
    """A head's size counted as httptools parses it: a head that arrives whole in one read
    never waits for the deadline, so it is bounded here."""

    max_head_bytes = MAX_HEAD_BYTES
    _parsed = 0  # bytes of the head being parsed
    _oversized = False

    def on_message_begin(self) -> None:
        self._parsed = 0
        super().on_message_begin()  # type: ignore[misc]

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)  # type: ignore[misc]

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)  # type: ignore[misc]

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > self.max_head_bytes:
            self._oversized = True
            raise _HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._oversized:
            self._refuse_head()  # type: ignore[attr-defined]
        else:
            super().send_400_response(msg)  # type: ignore[misc]


if HttpToolsProtocol is None:
    BoundedProtocol: type[HeadBounds] = BoundedH11Protocol
else:

    class BoundedHttpTools(HeadBounds, _HttpToolsHeadSize, HttpToolsProtocol):
        """uvicorn's httptools protocol with :class:`HeadBounds` and a bound on whole heads."""

    BoundedProtocol = BoundedHttpTools


def protocol(settings: Settings) -> type[HeadBounds]:
    """:class:`BoundedProtocol` with the bounds of ``settings``."""
    return type(
        "BoundedProtocol",
        (BoundedProtocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "max_open": settings.max_connections,
        },
    )


class ListenError(Exception):
    """The daemon's address cannot be listened on; the message is one sentence for the user."""


def listen(settings: Settings) -> socket.socket:
    """The listening socket on the settings' address, before anything else starts: a taken
    port is one sentence and no ``ready`` line (uvicorn would bind only after start-up)."""
    host, port = settings.host, settings.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until the app serves them
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"port {port} on {host} is already in use; choose another with --port or "
                "EDGECL_PORT"
            ) from None
        raise ListenError(
            f"cannot listen on {host} port {port} ({exc.strerror or exc}); choose another "
            "address with --host/--port or EDGECL_HOST/EDGECL_PORT"
        ) from None
    sock.set_inheritable(False)
    bound = sock.getsockname()
    log.info("listening on http://%s:%d", f"[{host}]" if ":" in host else host, bound[1])
    return sock


def uvicorn_config(app: Any, settings: Settings) -> Any:
    """The uvicorn ``Config`` the daemon runs with."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=2,
        access_log=settings.log_level == "debug",
        http=protocol(settings),
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type]
    )
