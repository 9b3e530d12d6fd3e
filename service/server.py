"""The HTTP server around the app: uvicorn's h11 protocol with bounds on what idle or slow
clients can hold (connections, and time to send a request head).

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and answers 503 past
``limit_concurrency``, but a connection that never sends a whole request head is kept
forever, and each holds a file descriptor: enough of them starve the WAL and checkpoints.
Here such a connection is closed after ``header_timeout_s``, and one past
``max_connections`` as soon as it is accepted. The body has its own deadline
(:class:`service.body_limit.BodyLimit`).
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

log = logging.getLogger("edgecl.server")


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a hard connection cap;
    :func:`protocol` makes one with the settings' bounds."""

    header_timeout_s = 10.0
    max_open = 1000
    _last_refusal = 0.0  # class-wide: at most one log line per second

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaited: object = None  # the cycle seen when the deadline was set

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_open:
            now = time.monotonic()
            if now - BoundedH11Protocol._last_refusal > 1.0:
                BoundedH11Protocol._last_refusal = now
                log.warning("%d connections are open: closing new ones", len(self.connections))
            transport.abort()
            return
        self._await_head()

    def _await_head(self) -> None:
        self._cancel()
        self._awaited = self.cycle
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
        if self._deadline is not None and self.cycle is not self._awaited:
            self._cancel()  # a whole request head arrived: the body has its own deadline

    def on_response_complete(self) -> None:
        done = self.cycle
        super().on_response_complete()  # may start a pipelined request already received
        if self.cycle is done and not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)


def protocol(settings: Settings) -> type[BoundedH11Protocol]:
    """:class:`BoundedH11Protocol` with the bounds of ``settings``."""
    return type(
        "BoundedH11Protocol",
        (BoundedH11Protocol,),
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
