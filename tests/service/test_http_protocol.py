"""The daemon's HTTP protocols (httptools', and h11's where httptools is missing) on a real
uvicorn server: keep-alive and pipelined requests are all answered, and a request head past
the size bound is refused with a status and a closed connection, not buffered."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from service.server import MAX_HEAD_BYTES, BoundedH11Protocol, BoundedProtocol, HeadBounds
from tests.service.daemon import Daemon, identity_env


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers each request with its path and body length."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    reply = f"{scope['path']} {size}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(reply)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": reply})


@pytest.fixture(params=[BoundedProtocol, BoundedH11Protocol], ids=["default", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    kind: type[HeadBounds] = request.param
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(echo, http=kind, ws="none", log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve(sockets=[sock])))
    thread.start()
    try:
        while not srv.started:
            thread.join(0.01)
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def read_all(conn: socket.socket) -> bytes:
    conn.settimeout(10)
    out = b""
    while chunk := conn.recv(65536):
        out += chunk
    return out


def test_pipelined_keep_alive_requests_are_all_answered(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as conn:
        requests = [
            f"POST /r{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {i}\r\n\r\n".encode() + b"a" * i
            for i in range(3)
        ]
        conn.sendall(b"".join(requests))
        conn.sendall(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        replies = read_all(conn)
    assert replies.count(b"HTTP/1.1 200 ") == 4
    for body in (b"/r0 0", b"/r1 1", b"/r2 2", b"/last 0"):
        assert body in replies


def test_a_head_past_the_bound_is_refused_and_the_connection_closed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as conn:
        # Twice the bound of headers and no end of head, as a client that never ends it.
        pad = b"".join(f"X-Pad-{i}: {'p' * 1000}\r\n".encode() for i in range(40))
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + pad)
        reply = read_all(conn)
    assert len(pad) > 2 * MAX_HEAD_BYTES
    assert reply.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), reply[:80]


def test_the_daemon_refuses_a_large_head_with_431(tmp_path: Any) -> None:
    with Daemon(tmp_path / "data", identity_env(4)) as daemon:
        with socket.create_connection(("127.0.0.1", daemon.port)) as conn:
            conn.sendall(
                b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: "
                + b"b" * (2 * MAX_HEAD_BYTES)
                + b"\r\n\r\n"
            )
            reply = read_all(conn)
        assert reply.startswith(b"HTTP/1.1 431 "), reply[:80]
        assert f"larger than {MAX_HEAD_BYTES} bytes".encode() in reply
        with socket.create_connection(("127.0.0.1", daemon.port)) as conn:
            conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_all(conn).startswith(b"HTTP/1.1 200 ")
