"""A poison sample fails its own request alone: never the honest requests of other clients
that share its micro-batch, over HTTP or in the writer itself."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edgecl import Learner, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.batch import Batch
from service.errors import SampleError
from service.wal import WriteAheadLog
from service.writer import LearnJob, Writer
from tests.service.conftest import DIM, make_settings, sample

POISON = b'{"samples": [{"features": [1, 0, 0, 0], "label": "\\ud800", "id": "p"}]}'


def test_lone_surrogate_label_is_a_422_for_that_request_alone(
    client_for: Callable[..., TestClient],
) -> None:
    # A long wait gathers concurrent requests into the same micro-batches.
    client = client_for(make_settings(max_wait_ms=50.0))
    statuses: dict[str, list[int]] = {"honest": [], "poison": []}
    start = threading.Barrier(8)

    def honest(worker: int) -> None:
        start.wait()
        for i in range(10):
            body = {"samples": [sample(f"c{worker}", worker % DIM, sid=f"{worker}-{i}")]}
            statuses["honest"].append(client.post("/learn", json=body).status_code)

    def poison() -> None:
        start.wait()
        for _ in range(10):
            reply = client.post(
                "/learn", content=POISON, headers={"content-type": "application/json"}
            )
            statuses["poison"].append(reply.status_code)
            assert "samples[0].label: label is not valid Unicode text" in reply.json()["detail"]

    threads = [threading.Thread(target=honest, args=(w,)) for w in range(6)]
    threads += [threading.Thread(target=poison) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses["honest"] == [200] * 60 and statuses["poison"] == [422] * 20
    stats = client.get("/stats").json()
    assert stats["samples_learned"] == 60 and sorted(stats["classes"]) == [
        f"c{w}" for w in range(6)
    ]


@pytest.mark.parametrize(
    ("label", "sample_id", "why"),
    [("\ud800", "p", "lone surrogate"), (2**70, "p", "64-bit"), ("ok", "\udfff", "surrogates")],
)
def test_the_writer_fails_only_the_request_that_cannot_be_stored(
    tmp_path: Path, label: object, sample_id: str, why: str
) -> None:
    # Past the door (e.g. a caller of the runtime that skips the schema): the writer still
    # fails the bad request alone, and nothing of it reaches the WAL.
    wal = WriteAheadLog(tmp_path / "wal")
    writer = Writer(Learner(IdentityBackbone(2), strategies.create("ncm")), wal=wal)
    z = np.eye(2, dtype=np.float32)
    jobs = [
        LearnJob(Batch(z, ["a", "b"]), ["h1", "h2"], "http"),
        LearnJob(Batch(z[:1], [label]), [sample_id], "mqtt"),  # type: ignore[list-item]
        LearnJob(Batch(z[1:], ["b"]), ["h3"], "http"),
    ]
    writer.learn_batch(jobs)
    assert jobs[0].future.result().accepted == 2 and jobs[2].future.result().accepted == 1
    with pytest.raises(SampleError, match=f"samples\\[0\\]: cannot be stored: .*{why}"):
        jobs[1].future.result()
    assert writer.learner.class_counts == [1, 2]
    wal.close()
    replayed = [r["ids"] for _, r in WriteAheadLog(tmp_path / "wal").replay(0)]
    assert replayed == [["h1", "h2"], ["h3"]]
