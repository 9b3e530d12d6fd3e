"""The service benchmarks' bare-socket HTTP client against a real daemon: what it reads is
what the daemon answered, error replies included, and a closed connection is opened again."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from benchmarks.load_clients import Connection, Requests, run_clients
from tests.service.daemon import Daemon, identity_env


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    env = identity_env(4, max_body_bytes=str(4096))
    with Daemon(tmp_path_factory.mktemp("clients") / "data", env) as d:
        yield d


def body(label: str, features: list[float]) -> bytes:
    return json.dumps({"samples": [{"features": features, "label": label}]}).encode()


def test_replies_are_read_whole_and_in_order(daemon: Daemon) -> None:
    with Connection(daemon.url) as http:
        for k in range(20):
            status, reply = http.post(
                "/learn", body(f"c{k % 3}", [k, 1.0, 0, 0]), "application/json"
            )
            assert status == 200, reply
            assert json.loads(reply)["accepted"] == 1
        status, reply = http.post("/learn", b"{not json", "application/json")
        assert status == 422 and b"detail" in reply
        status, reply = http.post("/learn", body("c0", [0.0] * 3), "application/json")
        assert status == 422 and b"dimension" in reply
        # Over the body limit: the daemon answers 413 and closes; the next post reconnects.
        status, reply = http.post("/learn", b"x" * 8192, "application/json")
        assert status == 413, reply
        status, reply = http.post("/learn", body("c1", [0, 2.0, 0, 0]), "application/json")
        assert status == 200, reply


def test_clients_count_what_the_daemon_learned(daemon: Daemon) -> None:
    before = httpx.get(f"{daemon.url}/stats").json()["samples_learned"]
    bodies = [body(f"d{k}", [0, 0, float(k), 1.0]) for k in range(4)]
    run = run_clients(daemon.url, 1.0, 2, Requests("/learn", bodies, "application/json"))
    after = httpx.get(f"{daemon.url}/stats").json()["samples_learned"]
    assert run.accepted == len(run.lat) > 0
    assert after - before == run.accepted


def test_a_reply_without_a_length_is_refused() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    port = server.getsockname()[1]
    with (
        Connection(f"http://127.0.0.1:{port}") as http,
        pytest.raises(RuntimeError, match="Content-Length"),
    ):
        http.post("/learn", b"{}", "application/json")
    thread.join()
    server.close()
