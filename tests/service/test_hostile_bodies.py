"""Bodies built to exhaust the daemon get a quick, short 4xx: a million empty samples,
nesting 100k deep, a form field int() refuses, hundreds of errors at once."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable

import msgpack
import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import make_settings, sample, stats_counts

JSON = {"content-type": "application/json"}
MSGPACK = {"content-type": "application/msgpack"}


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    client = client_for(make_settings())  # the default body limit: 8 MiB
    assert client.post("/learn", json={"samples": [sample("a", 0)]}).status_code == 200
    return client


def empty_samples(size: int) -> bytes:
    body = b'{"samples": [' + b"{}," * ((size - 16) // 3) + b"{}]}"
    assert len(body) <= size
    return body


@pytest.mark.parametrize("path", ["/learn", "/predict"])
@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (empty_samples(3_000_000), JSON),  # 1M items
        (empty_samples(8 << 20), JSON),  # 2.8M items, just under the body limit
        (b'{"samples": [' + b"0," * 1_000_000 + b"0]}", JSON),
        (msgpack.packb({"samples": [{}] * 1_000_000}), MSGPACK),
        (b'{"samples": [' + b"[]," * 2_700_000 + b"[]]}", JSON),
        (msgpack.packb({"samples": [[]] * 8_000_000}), MSGPACK),  # 8 MB: 1 byte per list
    ],
    ids=["1M-empty", "8MiB-empty", "1M-numbers", "1M-empty-msgpack", "json-lists", "msgpack-lists"],
)
def test_a_million_samples_are_refused_before_they_are_built(
    client: TestClient, path: str, body: bytes, headers: dict[str, str]
) -> None:
    before = stats_counts(client)
    reply = client.post(path, content=body, headers=headers)
    assert reply.status_code == 413, reply.text[:500]
    assert reply.json()["detail"].startswith("too many samples")
    assert len(reply.content) < 1000
    assert stats_counts(client) == before


@pytest.mark.parametrize("path", ["/learn", "/predict"])
@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"samples": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON),
        (b'{"samples": [{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}", JSON),
        (b"\x81\xa7samples" + b"\x91" * 100_000 + b"\x90", MSGPACK),
    ],
    ids=["json-samples", "json-features", "msgpack"],
)
def test_nesting_100k_deep_is_a_422(
    client: TestClient, path: str, body: bytes, headers: dict[str, str]
) -> None:
    reply = client.post(path, content=body, headers=headers)
    assert reply.status_code == 422, reply.text[:500]
    assert "nested too deeply" in reply.json()["detail"] or "not valid" in reply.json()["detail"]


def test_a_deep_body_leaves_the_garbage_collectors_callbacks_room_to_run(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon times the collector's pauses in Python: a body nested deeper than the
    interpreter's stack must be refused before a collection inside the parser finds no
    stack left for that callback (seen as an exception the callback could not raise)."""
    lost: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: lost.append(u.exc_value))
    body = b'{"samples": [{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    threshold = gc.get_threshold()
    gc.set_threshold(1)  # a collection at nearly every allocation, the deep ones too
    try:
        reply = client.post("/learn", content=body, headers=JSON)
    finally:
        gc.set_threshold(*threshold)
    assert reply.status_code == 422
    assert "nested too deeply" in reply.json()["detail"]
    assert lost == []


def test_a_body_of_many_shallow_arrays_is_parsed(client: TestClient) -> None:
    """More brackets than the depth bound, nested 3 deep: looked at, and learned."""
    samples = [sample("a", 0, sid=f"s{i}") for i in range(100)]  # and "]" in a string
    samples[0]["id"] = "[" * 100
    reply = client.post("/learn", json={"samples": samples})
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == 100


@pytest.mark.parametrize("top_k", ["²", "٣", "9" * 5000, "-1", "1.5"])
def test_multipart_top_k_that_int_refuses_is_a_422(client: TestClient, top_k: str) -> None:
    from tests.service.conftest import png

    files = [("file", ("a.png", png([[0, 255], [255, 0]]), "image/png"))]
    reply = client.post("/predict", files=files, data={"top_k": top_k})
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"] == "top_k: must be a positive integer"


def test_hundreds_of_errors_make_a_short_reply(client: TestClient) -> None:
    bad = {"features": [True, "x", None, 0], "label": 1.5, "colour": "red", "id": 3}
    reply = client.post("/learn", json={"samples": [bad] * 256})
    assert reply.status_code == 422
    body = reply.json()
    assert len(body["errors"]) == 20 and body["detail"].endswith("more")
    assert body["detail"].startswith("samples[0].") and len(reply.content) < 5000


def test_more_files_than_samples_allowed_is_a_413(client_for: Callable[..., TestClient]) -> None:
    from tests.service.conftest import png

    client = client_for(make_settings(max_samples_per_request=4))
    files = [("file", ("a.png", png([[0, 255], [255, 0]]), "image/png"))] * 5
    reply = client.post("/learn", files=files, data={"label": "a"})
    assert reply.status_code == 413 and "5 in one request, the limit is 4" in reply.text


def test_a_body_of_labels_is_still_learned(client: TestClient) -> None:
    # The map count is no limit for honest bodies: 256 samples with packed arrays.
    samples = [
        {"features": {"dtype": "float32", "shape": [4], "data": [1, 0, 0, 0]}, "label": "b"}
    ] * 256
    reply = client.post("/learn", content=json.dumps({"samples": samples}), headers=JSON)
    assert reply.status_code == 200 and reply.json()["accepted"] == 256
