"""Checkpoints: newest valid generation wins, damaged ones are skipped with a warning,
old generations are pruned, and a full disk fails cleanly."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecl import Learner, persistence, strategies
from edgecl.backbones import IdentityBackbone
from service.checkpoints import Checkpoints, RestoreError
from service.wal import StorageError
from tests.tmpfs import small_tmpfs


def state(i: int) -> dict[str, Any]:
    return {"model_version": i, "w": np.full((3, 4), i, dtype=np.float32), "names": ["a", i]}


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgecl.durability"]


def assert_state(loaded: tuple[dict[str, Any], int] | None, i: int, seq: int) -> None:
    assert loaded is not None
    got, wal_seq = loaded
    assert wal_seq == seq and got["model_version"] == i and got["names"] == ["a", i]
    np.testing.assert_array_equal(got["w"], state(i)["w"])


def test_newest_valid_is_loaded_and_old_generations_pruned(tmp_path: Path) -> None:
    ckpts = Checkpoints(tmp_path)
    for i, seq in enumerate([5, 17, 120, 1000], start=1):
        path = ckpts.save(state(i), seq)
        assert path.name == f"checkpoint-{seq:012d}.ckpt"
        assert ckpts.last_size_bytes == path.stat().st_size
        assert ckpts.last_duration_s >= 0
    assert names(tmp_path) == ["checkpoint-000000000120.ckpt", "checkpoint-000000001000.ckpt"]
    assert ckpts.oldest_kept_seq == 120
    assert_state(Checkpoints(tmp_path).load_latest(), 4, 1000)


def test_keep_three_generations(tmp_path: Path) -> None:
    ckpts = Checkpoints(tmp_path, keep=3)
    for seq in range(1, 7):
        ckpts.save(state(seq), seq)
    assert [int(n[11:23]) for n in names(tmp_path)] == [4, 5, 6]
    with pytest.raises(ValueError, match="keep"):
        Checkpoints(tmp_path, keep=0)


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_newest_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpts = Checkpoints(tmp_path)
    ckpts.save(state(1), 10)
    newest = ckpts.save(state(2), 20)
    damage(newest)
    with caplog.at_level(logging.WARNING, logger="edgecl.durability"):
        assert_state(ckpts.load_latest(), 1, 10)
    assert len(warnings(caplog)) == 1
    assert newest.name in warnings(caplog)[0] and "checksum" in warnings(caplog)[0]


def test_empty_newest_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpts = Checkpoints(tmp_path)
    ckpts.save(state(1), 10)
    ckpts.save(state(2), 20).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="edgecl.durability"):
        assert_state(Checkpoints(tmp_path).load_latest(), 1, 10)
    assert any("checkpoint-000000000020.ckpt" in m and "empty" in m for m in warnings(caplog))


def covered(first: int, last: int) -> bool:
    return True


def test_corrupt_newest_is_set_aside_when_the_wal_covers_it(tmp_path: Path) -> None:
    ckpts = Checkpoints(tmp_path)
    ckpts.save(state(1), 10)
    damage(ckpts.save(state(2), 20))
    assert_state(ckpts.load_latest(covered), 1, 10)
    assert ckpts.oldest_kept_seq == 10
    ckpts.save(state(3), 20)  # the same seq again: it must not replace the damaged file
    ckpts.save(state(4), 30)
    # The damaged file is kept aside, never pruned nor overwritten.
    assert names(tmp_path) == [
        "checkpoint-000000000020.ckpt",
        "checkpoint-000000000020.ckpt.unreadable",
        "checkpoint-000000000030.ckpt",
    ]
    assert ckpts.oldest_kept_seq == 20


def test_a_damaged_checkpoint_the_wal_does_not_cover_refuses_to_start(tmp_path: Path) -> None:
    ckpts = Checkpoints(tmp_path)
    ckpts.save(state(1), 10)
    damage(ckpts.save(state(2), 20))
    asked: list[tuple[int, int]] = []

    def wal_from_15(first: int, last: int) -> bool:
        asked.append((first, last))
        return first >= 15

    with pytest.raises(RestoreError, match="checkpoint-000000000020.ckpt cannot be read") as exc:
        ckpts.load_latest(wal_from_15)
    assert "refusing to start" in str(exc.value) and asked == [(11, 20)]
    # Nothing was changed: the next start finds the same files.
    assert names(tmp_path) == ["checkpoint-000000000010.ckpt", "checkpoint-000000000020.ckpt"]


def test_a_checkpoint_that_cannot_be_read_at_all_refuses_to_start(tmp_path: Path) -> None:
    Checkpoints(tmp_path).save(state(1), 10)
    (tmp_path / "checkpoint-000000000020.ckpt").mkdir()  # read_bytes: IsADirectoryError
    with pytest.raises(RestoreError, match="cannot read checkpoint .*20.ckpt"):
        Checkpoints(tmp_path).load_latest(covered)


def test_no_valid_checkpoint_gives_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert Checkpoints(tmp_path / "missing").load_latest() is None
    (tmp_path / "checkpoint-000000000003.ckpt").write_bytes(b"")
    (tmp_path / "checkpoint-000000000002.ckpt").write_bytes(b"\x00garbage" * 10)
    persistence.save(tmp_path / "checkpoint-000000000001.ckpt", {"not": "a checkpoint"})
    (tmp_path / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="edgecl.durability"):
        assert Checkpoints(tmp_path).load_latest() is None
    messages = warnings(caplog)
    assert len(messages) == 4
    assert "empty" in messages[0] and "bad header" in messages[1]
    assert "checkpoint-000000000001.ckpt" in messages[2] and "no readable" in messages[3]
    assert len(names(tmp_path)) == 4  # without a WAL to check, nothing is set aside


def test_wal_seq_inside_the_file_is_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = Checkpoints(tmp_path).save(state(1), 5)
    path.rename(tmp_path / "checkpoint-000000000009.ckpt")
    with caplog.at_level(logging.WARNING, logger="edgecl.durability"):
        assert_state(Checkpoints(tmp_path).load_latest(), 1, 5)
    assert any("holds wal_seq 5" in m for m in warnings(caplog))


def test_stale_temporary_is_removed(tmp_path: Path) -> None:
    (tmp_path / ".checkpoint-000000000004.ckpt.tmp").write_bytes(b"half a checkpoint")
    Checkpoints(tmp_path).save(state(1), 7)
    assert names(tmp_path) == ["checkpoint-000000000007.ckpt"]


def test_learner_state_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    learner = Learner(IdentityBackbone(8), strategies.create("ncm"))
    learner.learn_latents(rng.normal(size=(40, 8)), [f"c{i % 4}" for i in range(40)])
    probe = rng.normal(size=(10, 8))
    ckpts = Checkpoints(tmp_path)
    ckpts.save(learner.state_dict(), 3)
    loaded = ckpts.load_latest()
    assert loaded is not None and loaded[1] == 3
    restored = Learner.from_state(loaded[0])
    assert restored.predict_many(probe) == learner.predict_many(probe)
    assert restored.class_counts == learner.class_counts
    np.testing.assert_array_equal(
        restored.predict_proba_latents(probe), learner.predict_proba_latents(probe)
    )


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "fs", "64k") as mount:
        yield mount


def test_disk_full_keeps_previous_checkpoint(small_fs: Path) -> None:
    ckpts = Checkpoints(small_fs / "ckpt")
    ckpts.save(state(1), 10)
    big = {"w": np.ones(20000, dtype=np.float32)}  # 80 kB: larger than the filesystem
    with pytest.raises(StorageError, match="^the data directory is full: writing checkpoint"):
        ckpts.save(big, 20)
    assert names(small_fs / "ckpt") == ["checkpoint-000000000010.ckpt"]  # no temporary left
    assert_state(ckpts.load_latest(), 1, 10)
    # The partial temporary was removed, so a checkpoint that fits can still be written.
    ckpts.save({"w": np.ones(2000, dtype=np.float32)}, 30)
    loaded = ckpts.load_latest()
    assert loaded is not None and loaded[1] == 30
