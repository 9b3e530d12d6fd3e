"""Checkpoints by WAL bytes: a trickle writes none, a stop writes none that is not due, the
WAL tail a restart replays still counts, and every restart is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.checkpoints import Checkpoints
from service.runtime import LearnerRuntime
from service.settings import DurabilitySettings
from service.wal import WriteAheadLog
from tests.service.conftest import DIM, ncm_runtime

#: A tiny threshold, so a few samples of 4-d latents reach it.
POLICY = DurabilitySettings(checkpoint_min_wal_bytes=4096, checkpoint_wal_ratio=1.0)


def runtime(data: Path, durability: DurabilitySettings = POLICY) -> LearnerRuntime:
    wal, checkpoints = WriteAheadLog(data / "wal"), Checkpoints(data / "checkpoints")
    rt = ncm_runtime(wal=wal, checkpoints=checkpoints, durability=durability)
    rt.start()
    return rt


def learn(rt: LearnerRuntime, n: int, start: int) -> None:
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        z = rng.normal(size=(1, DIM)).astype(np.float32)
        rt.submit_learn(z, [f"c{i % 3}"], [f"id-{i}"]).result(5.0)


def counts(rt: LearnerRuntime) -> tuple[int, int]:
    stats = rt.stats()
    assert stats.durability is not None
    return stats.events["checkpoints"], stats.durability.wal_bytes


def scores(rt: LearnerRuntime) -> list[list[float]]:
    probe = np.eye(DIM, dtype=np.float32)
    return [[s for _, s in p.top_k] for p in rt.predict(probe, top_k=3).predictions]


def test_checkpoints_follow_wal_bytes_not_samples_or_stops(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    first, _ = counts(rt)
    assert first == 1  # a new data dir names its backbone at once
    learn(rt, 5, 0)
    assert counts(rt)[0] == first  # a trickle: far below the threshold
    threshold = max(4096, rt.writer.checkpoints.last_size_bytes)  # type: ignore[union-attr]
    n = 0
    while counts(rt)[0] == first:
        learn(rt, 1, 5 + n)
        n += 1
    taken, wal_bytes = counts(rt)
    assert taken == first + 1 and wal_bytes >= threshold
    learn(rt, 3, 100)
    before = scores(rt)
    rt.stop()
    assert counts(rt)[0] == first + 1  # the stop wrote none: the WAL keeps the last three

    again = runtime(tmp_path)
    assert scores(again) == before and counts(again)[0] == 0
    again.stop()


def test_the_replayed_tail_counts_toward_the_next_checkpoint(tmp_path: Path) -> None:
    # Short sessions that never reach the threshold alone must not grow the WAL forever.
    taken, start = 0, 0
    for _ in range(40):
        rt = runtime(tmp_path)
        learn(rt, 3, start)
        start += 3
        rt.stop()  # the writer checkpoints after it answers: count once it stopped
        taken += counts(rt)[0]
        if taken > 1:  # beyond the new data dir's first one
            break
    assert taken > 1
    rt = runtime(tmp_path)
    assert rt.stats().samples_learned == start
    rt.stop()


def test_checkpoint_on_stop(tmp_path: Path) -> None:
    rt = runtime(tmp_path, POLICY.model_copy(update={"checkpoint_on_stop": True}))
    learn(rt, 2, 0)
    rt.stop()
    assert counts(rt)[0] == 2  # the first one, and the stop's


def test_stats_show_wear_per_sample_and_the_wal_no_checkpoint_holds(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    learn(rt, 6, 0)
    d = rt.stats().durability
    assert d is not None and d.wal_bytes_since_checkpoint == d.wal_bytes > 0
    # Younger than an hour: the last hour is the whole life of the process.
    assert d.bytes_per_sample_last_hour == (d.wal_bytes + d.checkpoint_bytes) / 6
    assert rt.stats().bytes_written_per_sample == d.bytes_per_sample_last_hour
    rt.stop()


def test_a_model_keeps_its_store_unless_the_settings_name_another(tmp_path: Path) -> None:
    import pytest

    from service.bootstrap import build_runtime
    from tests.service.conftest import make_settings

    def start(**store: object) -> LearnerRuntime:
        rt = build_runtime(make_settings(data_dir=tmp_path, store=store))
        rt.start()
        return rt

    rt = start(kind="reservoir", max_bytes=1 << 16)
    learn(rt, 4, 0)
    rt.stop()
    # ncm's paper keeps no store, but the model was learned with one: it keeps it.
    again = start(kind="paper")
    assert again.stats().store.kind == "reservoir" and again.stats().store.items == 4
    again.stop()
    with pytest.raises(ValueError, match="the settings ask for"):
        start(kind="class_balanced")
