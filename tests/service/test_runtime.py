"""LearnerRuntime: micro-batching, back-pressure, storage failures, restore, drain on stop."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edgecl import Learner
from edgecl.backbones import IdentityBackbone
from edgecl.strategies.ncm import NCM
from edgecl.types import FloatArray, IntArray
from service.app import create_app
from service.checkpoints import Checkpoints
from service.errors import QueueFullError, StorageUnavailableError
from service.runtime import LearnerRuntime
from service.settings import DurabilitySettings, QueueSettings
from service.wal import StorageError, WriteAheadLog
from tests.service.conftest import DIM, make_settings, ncm_runtime, sample, stats_counts


class GatedNCM(NCM):
    """NCM whose learning waits at a gate, so tests can hold the writer thread."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        self.entered.set()
        assert self.gate.wait(10.0)
        super().learn_many(z, y)


def gated_runtime(**kwargs: Any) -> tuple[LearnerRuntime, GatedNCM]:
    strategy = GatedNCM()
    return LearnerRuntime(Learner(IdentityBackbone(DIM), strategy), **kwargs), strategy


def z(n: int, value: float = 1.0) -> FloatArray:
    return np.full((n, DIM), value, dtype=np.float32)


def test_queued_requests_are_learned_as_one_micro_batch() -> None:
    rt, strategy = gated_runtime(queue=QueueSettings(max_batch=64, max_wait_ms=50.0))
    rt.start()
    first = rt.submit_learn(z(1), ["a"], [None])
    assert strategy.entered.wait(5.0)
    later = [rt.submit_learn(z(2), ["b", "b"], [None, None]) for _ in range(3)]
    strategy.gate.set()
    assert first.result(5.0).model_version == 1
    # The three queued requests went through the head in one update.
    assert {f.result(5.0).model_version for f in later} == {2}
    assert rt.learner.samples_learned == 7
    rt.stop()


def test_queue_full_is_refused_and_counted() -> None:
    rt, strategy = gated_runtime(queue=QueueSettings(size=2))
    rt.start()
    running = rt.submit_learn(z(1), ["a"], [None])
    assert strategy.entered.wait(5.0)
    queued = [rt.submit_learn(z(1), ["a"], [None]) for _ in range(2)]
    with pytest.raises(QueueFullError, match="queue is full"):
        rt.submit_learn(z(1), ["a"], [None])
    strategy.gate.set()
    for future in [running, *queued]:
        future.result(5.0)
    assert rt.stats().events["queue_full"] == 1
    rt.stop()


def test_queue_full_is_503_with_retry_after() -> None:
    settings = make_settings(queue_size=1, retry_after_s=3)
    rt, strategy = gated_runtime(queue=QueueSettings(size=1))
    with TestClient(create_app(settings, rt)) as client:
        body = {"samples": [sample("a", 0)]}
        replies: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: replies.append(client.post("/learn", json=body).status_code)
            )
            for _ in range(2)
        ]
        threads[0].start()
        assert strategy.entered.wait(5.0)  # the writer holds the first request
        threads[1].start()
        while len(rt.queue) < 1:  # the second one waits in the queue
            threading.Event().wait(0.005)
        response = client.post("/learn", json=body)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert "queue is full" in response.json()["detail"]
        strategy.gate.set()
        for t in threads:
            t.join(10.0)
        assert replies == [200, 200]


class FailingWAL(WriteAheadLog):
    """A real WAL that can be told to fail like a full disk."""

    fail_append = False
    fail_sync = False

    def append_many(self, records: list[dict[str, Any]]) -> int:
        if self.fail_append:
            raise StorageError("no space left on device while appending to the WAL")
        return super().append_many(records)

    def wait_durable(self, seq: int) -> None:
        if self.fail_sync:
            raise StorageError("no space left on device while syncing the WAL")
        super().wait_durable(seq)


def test_storage_error_is_507_and_learns_nothing(tmp_path: Path) -> None:
    wal = FailingWAL(tmp_path / "wal")
    rt = ncm_runtime(wal=wal)
    settings = make_settings(data_dir=tmp_path)
    with TestClient(create_app(settings, rt)) as client:
        assert client.post("/learn", json={"samples": [sample("a", 0)]}).status_code == 200
        before = stats_counts(client)
        wal.fail_append = True
        response = client.post("/learn", json={"samples": [sample("b", 1, sid="k")]})
        assert response.status_code == 507
        detail = response.json()["detail"]
        assert "could not be stored, nothing was learned: no space left" in detail
        assert stats_counts(client) == before
        wal.fail_append = False  # space freed: the same request now goes through
        response = client.post("/learn", json={"samples": [sample("b", 1, sid="k")]})
        assert response.json()["duplicates"] == 0
        stats = client.get("/stats").json()
        assert stats["events"]["storage_errors"] == 1
        assert stats["bytes_written_per_sample"] > 0


def test_failed_sync_fails_the_request(tmp_path: Path) -> None:
    wal = FailingWAL(tmp_path / "wal")
    wal.fail_sync = True
    rt = ncm_runtime(wal=wal)
    rt.start()
    with pytest.raises(StorageUnavailableError, match="could not be made durable: no space"):
        rt.submit_learn(z(1), ["a"], ["k"]).result(5.0)
    # The id is forgotten: a retry is stored and synced again, not acknowledged as seen.
    wal.fail_sync = False
    assert rt.submit_learn(z(1), ["a"], ["k"]).result(5.0).duplicates == 0
    rt.stop()


def durable_runtime(data: Path, **kwargs: Any) -> LearnerRuntime:
    return ncm_runtime(
        wal=WriteAheadLog(data / "wal"), checkpoints=Checkpoints(data / "checkpoints"), **kwargs
    )


def test_stop_checkpoints_and_restart_restores(tmp_path: Path) -> None:
    rt = durable_runtime(tmp_path)
    rt.start()
    rt.submit_learn(z(2), ["a", "b"], ["k1", "k2"]).result(5.0)
    rt.submit_learn(z(1, 2.0), ["c"], [None]).result(5.0)
    rt.stop()
    assert list((tmp_path / "checkpoints").glob("checkpoint-*.ckpt"))

    again = durable_runtime(tmp_path)
    again.start()
    assert again.learner.samples_learned == 3 and again.learner.model_version == 2
    assert again.learner.labels.labels == ["a", "b", "c"]
    # Ids seen before the restart are still recognised.
    assert again.submit_learn(z(1), ["a"], ["k1"]).result(5.0).duplicates == 1
    again.stop()


def test_wal_is_replayed_after_a_crash(tmp_path: Path) -> None:
    # No checkpoint at all: the first run only wrote its WAL (as if killed before one).
    first = ncm_runtime(wal=WriteAheadLog(tmp_path / "wal"))
    first.start()
    for i in range(5):
        first.submit_learn(z(1, float(i)), [f"c{i % 2}"], [f"id{i}"]).result(5.0)
    first.stop()
    assert not (tmp_path / "checkpoints").exists()

    again = durable_runtime(tmp_path)
    again.start()
    assert again.learner.samples_learned == 5
    assert again.stats().events["replayed"] == 5
    assert again.submit_learn(z(1), ["c0"], ["id4"]).result(5.0).duplicates == 1
    again.stop()


def test_checkpoint_every_n_samples(tmp_path: Path) -> None:
    rt = durable_runtime(tmp_path, durability=DurabilitySettings(checkpoint_every_samples=2))
    rt.start()
    for i in range(4):
        rt.submit_learn(z(1, float(i)), ["a"], [None]).result(5.0)
    rt.stop()
    # The new data dir's first one, then two due ones; nothing new was left for the one on
    # stop. Two generations are kept.
    assert rt.stats().events["checkpoints"] == 3
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert names == ["checkpoint-000000000002.ckpt", "checkpoint-000000000004.ckpt"]


def test_predictions_do_not_wait_for_a_learning_step() -> None:
    rt, strategy = gated_runtime()
    rt.start()
    first = rt.submit_learn(z(1), ["a"], [None])
    strategy.gate.set()
    assert first.result(5.0).model_version == 1
    strategy.gate.clear()
    strategy.entered.clear()
    held = rt.submit_learn(z(1, 5.0), ["b"], [None])
    assert strategy.entered.wait(5.0)  # the writer is inside a learning step, holding the lock
    result = rt.predict(z(1), top_k=1)  # answered from the frozen head of version 1
    assert result.model_version == 1 and result.predictions[0].label == "a"
    strategy.gate.set()
    assert held.result(5.0).model_version == 2
    assert rt.predict(z(1, 5.0), top_k=1).predictions[0].label == "b"
    rt.stop()


def test_stop_drains_the_queue() -> None:
    rt, strategy = gated_runtime(queue=QueueSettings(size=8))
    rt.start()
    futures = [rt.submit_learn(z(1), ["a"], [None])]
    assert strategy.entered.wait(5.0)
    futures += [rt.submit_learn(z(1), ["b"], [None]) for _ in range(3)]
    stopper = threading.Thread(target=rt.stop)
    stopper.start()
    strategy.gate.set()
    stopper.join(10.0)
    assert all(f.result(0).accepted == 1 for f in futures)
    assert rt.learner.samples_learned == 4
    assert not rt.ready
