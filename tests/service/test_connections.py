"""Idle and slow clients against the real daemon (uvicorn): connections past the limit are
closed at once, a request head or body that does not arrive in time ends its connection,
honest requests are served again once the slow clients are gone, and SIGTERM still stops
the daemon. Kept small: a low limit and short timeouts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import sample
from tests.service.daemon import Daemon, identity_env

LIMIT = 8


def closed_by_peer(conn: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the daemon closes ``conn`` within ``timeout`` (it sends nothing first)."""
    conn.settimeout(timeout)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until_served(url: str, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = httpx.post(f"{url}/learn", json={"samples": [sample("a", 0)]}, timeout=5)
            if reply.status_code == 200 or time.monotonic() > deadline:
                return reply
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


@pytest.mark.slow
def test_idle_and_slow_clients_are_bounded_and_sigterm_still_stops(tmp_path: Path) -> None:
    env = identity_env(4, max_connections=str(LIMIT), header_timeout_s="1", body_timeout_s="1")
    with Daemon(tmp_path / "data", env) as daemon, ExitStack() as stack:
        pid = daemon.process.pid
        baseline = open_fds(pid)
        idle = [
            stack.enter_context(socket.create_connection(("127.0.0.1", daemon.port)))
            for _ in range(4 * LIMIT)
        ]
        # Past the limit, connections are closed as soon as they are accepted ...
        time.sleep(0.3)
        assert open_fds(pid) <= baseline + LIMIT + 2
        # ... and the rest once their request head has not come in time, even trickled.
        for conn in idle[:LIMIT]:
            conn.sendall(b"POST /learn HTTP/1.1\r\n")
        assert all(closed_by_peer(conn) for conn in idle)
        assert wait_until_served(daemon.url).status_code == 200

        # A body that does not arrive in time: 408, and the connection ends.
        slow = stack.enter_context(socket.create_connection(("127.0.0.1", daemon.port)))
        slow.sendall(
            b"POST /learn HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"samples": ['
        )
        slow.settimeout(10)
        reply = b""
        while chunk := slow.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert b"connection: close" in reply.lower() and b"did not arrive within 1 s" in reply

        # SIGTERM while slow clients hold connections: the daemon drains and exits 0.
        for _ in range(LIMIT):
            conn = stack.enter_context(socket.create_connection(("127.0.0.1", daemon.port)))
            conn.sendall(b"POST /learn HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        daemon.process.send_signal(signal.SIGTERM)
        try:
            assert daemon.process.wait(30) == 0
        except subprocess.TimeoutExpired:
            pytest.fail("the daemon did not stop within 30 s of SIGTERM")
    assert "Traceback" not in daemon.log.read_text()
