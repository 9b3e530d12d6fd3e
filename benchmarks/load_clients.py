"""HTTP clients of the service benchmarks: threads of this process, or a process each.

Client threads share this interpreter's lock: a reply that comes in while another client
thread runs Python waits for it, and that wait is counted as the daemon's latency. Client
processes (``processes=True``) wait only for the daemon and the CPUs, as separate devices
(cameras, robots) would; the benchmark reports which it used.

The clients stand for devices elsewhere, but here they share the daemon's cores, so each
speaks HTTP/1.1 on a bare keep-alive socket (:class:`Connection`): a tenth of the CPU per
request of a full client library, left to the daemon, as load generators such as wrk do.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Requests:
    """Request ``k`` of a client: ``path``, ``bodies[k % len]`` and ``ctype`` (picklable)."""

    path: str
    bodies: list[bytes]
    ctype: str

    def __call__(self, k: int) -> tuple[str, bytes, str]:
        return self.path, self.bodies[k % len(self.bodies)], self.ctype


class Connection:
    """A keep-alive HTTP/1.1 connection that posts bodies and reads replies framed by
    ``Content-Length`` (the daemon's replies are; anything else is an error, not a guess),
    connecting again after a reply that closes it."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host, self.address = parts.netloc, (parts.hostname, parts.port or 80)
        self.timeout = timeout
        self.sock = self._connect()
        self.buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def post(self, path: str, body: bytes, ctype: str) -> tuple[int, bytes]:
        """(status, reply body) of ``POST path``."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._more()
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        self.buf = self.buf[end + 4 :]
        status = int(lines[0].split(" ", 2)[1])
        pairs = (line.partition(":") for line in lines[1:])
        fields = {name.strip().lower(): value.strip() for name, _, value in pairs}
        if "content-length" not in fields:
            raise RuntimeError(f"{path}: a reply without Content-Length: {lines[:3]}")
        size = int(fields["content-length"])
        while len(self.buf) < size:
            self._more()
        reply, self.buf = self.buf[:size], self.buf[size:]
        if fields.get("connection", "").lower() == "close":
            self.sock.close()
            self.sock, self.buf = self._connect(), b""
        return status, reply

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("the daemon closed the connection mid-reply")
        self.buf += chunk


@dataclass
class Run:
    """What the clients measured: wall seconds, latencies (ms), samples accepted, and the
    CPU seconds of client processes (0 for threads: they count in this process's CPU)."""

    elapsed: float
    lat: list[float] = field(default_factory=list)
    accepted: int = 0
    client_cpu: float = 0.0


def one_client(url: str, start: float, seconds: float, c: int, clients: int,
               make: Requests, rate: float,
               stop: threading.Event | None = None) -> tuple[list[float], int, float]:  # fmt: skip
    """Client ``c`` of ``clients`` posts ``make(k)`` back to back, or at ``rate``
    requests/s (the clients' schedules staggered), from wall-clock time ``start`` for
    ``seconds``; returns (latencies in ms, samples accepted, its CPU seconds). A paced
    request's latency runs from when it was due, so a reply that makes the next request
    late counts against the daemon (no coordinated omission)."""
    lat: list[float] = []
    accepted = 0
    time.sleep(max(0.0, start - time.time()))
    cpu0 = time.thread_time()
    end = time.perf_counter() + seconds
    with Connection(url) as http:
        k, n = c * 100_000, 0
        due = time.perf_counter() + (c / (rate * clients) if rate > 0 else 0.0)
        while time.perf_counter() < end and not (stop is not None and stop.is_set()):
            path, content, kind = make(k)
            if rate > 0:
                time.sleep(max(0.0, due + n / rate - time.perf_counter()))
                t0 = due + n / rate
            else:
                t0 = time.perf_counter()
            status, reply = http.post(path, content, kind)
            ms = (time.perf_counter() - t0) * 1000
            if status != 200:
                raise RuntimeError(f"{path}: {status} {reply[:200]!r}")
            lat.append(ms)
            accepted += int(json.loads(reply).get("accepted", 0))
            k, n = k + 1, n + 1
    return lat, accepted, time.thread_time() - cpu0


def run_clients(url: str, seconds: float, clients: int, make: Requests, rate: float = 0.0,
                processes: bool = False,
                started: Callable[[], None] | None = None) -> Run:  # fmt: skip
    """``clients`` clients (threads, or processes) for ``seconds``: see :func:`one_client`;
    ``started`` is called when they start (after the processes are up)."""
    if processes:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(clients) as pool:
            pool.map(time.sleep, [0.0] * clients)  # every worker started and imported
            start = time.time() + 0.2
            args = [(url, start, seconds, c, clients, make, rate) for c in range(clients)]
            waiting = pool.starmap_async(one_client, args)
            time.sleep(max(0.0, start - time.time()))
            if started is not None:
                started()
            parts = waiting.get()
            elapsed = time.time() - start
        return Run(elapsed, [ms for p in parts for ms in p[0]], sum(p[1] for p in parts),
                   sum(p[2] for p in parts))  # fmt: skip
    results: list[tuple[list[float], int, float]] = []
    start = time.time()
    if started is not None:
        started()

    def run(c: int) -> None:
        results.append(one_client(url, start, seconds, c, clients, make, rate))

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(results) < clients:
        raise RuntimeError("a client thread failed (see above)")
    return Run(time.time() - start, [ms for p in results for ms in p[0]],
               sum(p[1] for p in results))  # fmt: skip
