"""Write-ahead log: framing, rotation, recovery from torn or corrupt tails, fsync policies,
and disk-full / read-only behaviour on a real (tiny) tmpfs."""

from __future__ import annotations

import errno
import logging
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from service.wal import StorageError, WriteAheadLog
from tests.tmpfs import small_tmpfs


def record(i: int, dim: int = 4) -> dict[str, Any]:
    z = np.random.default_rng(i).normal(size=(1 + i % 3, dim)).astype(np.float32)
    n = len(z)
    return {
        "kind": "learn",
        "z": z,
        "labels": [f"c{i % 5}"] * n,
        "ids": [f"id-{i}-{k}" if k else None for k in range(n)],
        "source": "http" if i % 2 else "mqtt",
    }


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    assert got["z"].dtype == np.float32
    np.testing.assert_array_equal(got["z"], want["z"])
    assert {k: v for k, v in got.items() if k != "z"} == {k: v for k, v in want.items() if k != "z"}


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


def fill(wal: WriteAheadLog, n: int, start: int = 1) -> None:
    i = start
    while i < start + n:
        batch = [record(j) for j in range(i, min(i + 1 + i % 4, start + n))]
        assert wal.append_many(batch) == i + len(batch) - 1
        i += len(batch)


def replayed(directory: Path, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
    wal = WriteAheadLog(directory)
    try:
        return list(wal.replay(after))
    finally:
        wal.close()


def test_round_trip_across_segment_rotations(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=1500)
    fill(wal, 120)
    wal.wait_durable(120)
    assert wal.bytes_written == sum(p.stat().st_size for p in segments(tmp_path))
    wal.close()
    files = segments(tmp_path)
    assert len(files) >= 5
    out = replayed(tmp_path)
    assert [seq for seq, _ in out] == list(range(1, 121))
    for seq, rec in out:
        assert_same(rec, record(seq))
    # Each segment is named by the seq of its first record.
    firsts = [int(p.name[4:16]) for p in files]
    assert firsts[0] == 1
    for first in firsts[1:]:
        assert [s for s, _ in replayed(tmp_path, after=first - 1)][0] == first
    assert [s for s, _ in replayed(tmp_path, after=77)] == list(range(78, 121))
    assert replayed(tmp_path, after=120) == []


def test_reopen_resumes_seq(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=800)
    fill(wal, 10)
    wal.close()
    wal = WriteAheadLog(tmp_path, segment_bytes=800)
    assert wal.last_seq == 10
    assert wal.append_many([record(11)]) == 11
    assert wal.append_many([]) == 11
    wal.close()
    assert [s for s, _ in replayed(tmp_path)] == list(range(1, 12))
    assert WriteAheadLog(tmp_path).last_seq == 11


def test_empty_directory_starts_at_one(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "new" / "wal")
    assert wal.last_seq == 0 and list(wal.replay(0)) == []
    assert wal.append_many([record(1)]) == 1
    wal.close()
    assert [s for s, _ in replayed(tmp_path / "new" / "wal")] == [1]


def write_log(directory: Path, n: int) -> tuple[Path, bytes, int]:
    """A log of ``n`` records; returns the newest segment, its bytes, and where its last
    record starts."""
    wal = WriteAheadLog(directory, segment_bytes=600)
    fill(wal, n - 1)
    path = segments(directory)[-1]
    prefix = path.stat().st_size
    wal.append_many([record(n)])
    wal.close()
    return path, path.read_bytes(), prefix


def check_recovered(directory: Path, path: Path, n: int, prefix: int) -> None:
    wal = WriteAheadLog(directory, segment_bytes=600)
    assert wal.last_seq == n - 1
    assert path.stat().st_size == prefix
    assert wal.append_many([record(1000)]) == n
    wal.close()
    out = replayed(directory)
    assert [s for s, _ in out] == list(range(1, n + 1))
    assert_same(out[-1][1], record(1000))
    assert_same(out[-2][1], record(n - 1))


def test_truncated_tail_at_every_offset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = 12
    path, data, prefix = write_log(tmp_path / "orig", n)
    assert len(segments(tmp_path / "orig")) > 1
    originals = {p.name: p.read_bytes() for p in segments(tmp_path / "orig")}
    for cut in range(prefix, len(data)):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        for name, content in originals.items():
            (directory / name).write_bytes(content)
        (directory / path.name).write_bytes(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgecl.durability"):
            check_recovered(directory, directory / path.name, n, prefix)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if cut == prefix:
            assert warnings == []  # nothing torn: the cut fell on a record boundary
        else:
            assert len(warnings) == 1
            assert path.name in warnings[0] and f"dropping {cut - prefix} bytes" in warnings[0]


def test_flipped_byte_in_last_record_cuts_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = 8
    path, data, prefix = write_log(tmp_path / "orig", n)
    originals = {p.name: p.read_bytes() for p in segments(tmp_path / "orig")}
    for offset in range(prefix, len(data)):
        directory = tmp_path / f"flip{offset}"
        directory.mkdir()
        for name, content in originals.items():
            (directory / name).write_bytes(content)
        damaged = bytearray(data)
        damaged[offset] ^= 0x40
        (directory / path.name).write_bytes(bytes(damaged))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgecl.durability"):
            check_recovered(directory, directory / path.name, n, prefix)
        assert any(path.name in r.getMessage() for r in caplog.records)
    middle = tmp_path / f"flip{(prefix + len(data)) // 2}"
    assert middle.is_dir()


def test_corrupt_older_segment_is_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=1200)
    fill(wal, 60)
    wal.close()
    files = segments(tmp_path)
    victim, following = files[1], files[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    first, nxt = int(victim.name[4:16]), int(following.name[4:16])
    with caplog.at_level(logging.WARNING, logger="edgecl.durability"):
        seqs = [s for s, _ in replayed(tmp_path)]
    assert seqs[-1] == 60 and len(seqs) == len(set(seqs))
    lost = set(range(1, 61)) - set(seqs)
    assert lost and min(lost) > first and max(lost) == nxt - 1
    assert any(victim.name in r.getMessage() and "lost" in r.getMessage() for r in caplog.records)


def test_remove_before_deletes_only_fully_covered_segments(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    firsts = [1, 11, 21, 31]
    for first in firsts:
        if first > 1:
            wal.segment_bytes = 1  # rotate before this batch
        wal.append_many([record(i) for i in range(first, first + 10)])
        wal.segment_bytes = 1 << 20
    assert [int(p.name[4:16]) for p in segments(tmp_path)] == firsts
    wal.remove_before(19)  # segment 11..20 still holds seq 20
    assert [int(p.name[4:16]) for p in segments(tmp_path)] == [11, 21, 31]
    wal.remove_before(20)
    assert [int(p.name[4:16]) for p in segments(tmp_path)] == [21, 31]
    wal.remove_before(10**9)  # the newest segment stays: it names the next seq
    assert [int(p.name[4:16]) for p in segments(tmp_path)] == [31]
    assert [s for s, _ in wal.replay(0)] == list(range(31, 41))
    assert wal.append_many([record(41)]) == 41
    wal.close()
    assert WriteAheadLog(tmp_path).last_seq == 41


def test_advance_to_keeps_seqs_going_forward(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append_many([record(1), record(2)])
    wal.advance_to(1)  # already past: no effect
    wal.advance_to(100)
    assert wal.append_many([record(3)]) == 101
    wal.close()
    wal = WriteAheadLog(tmp_path)
    assert wal.last_seq == 101
    assert [s for s, _ in wal.replay(0)] == [1, 2, 101]
    wal.close()
    empty = WriteAheadLog(tmp_path / "lost")
    empty.advance_to(7)
    assert not (tmp_path / "lost").exists()  # nothing written until something is appended
    assert empty.append_many([record(8)]) == 8
    empty.close()
    assert [s for s, _ in replayed(tmp_path / "lost")] == [8]


def test_always_fsyncs_once_per_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    wal = WriteAheadLog(tmp_path)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    wal.append_many([record(1)])
    wal.append_many([record(2), record(3)])
    calls.clear()  # creating the segment synced the directory
    wal.wait_durable(3)
    assert len(calls) == 1
    wal.wait_durable(2)  # already covered
    assert len(calls) == 1
    with pytest.raises(ValueError, match="never appended"):
        wal.wait_durable(4)
    wal.close()


def test_group_commit_waits_for_the_syncer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    synced: list[int] = []
    real_fsync = os.fsync

    def gated_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # directory syncs pass through
            release.wait()
            synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", gated_fsync)
    wal = WriteAheadLog(tmp_path, fsync="group", group_ms=1)
    seq = wal.append_many([record(1), record(2)])
    waiter = threading.Thread(target=wal.wait_durable, args=(seq,))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # no fsync has completed, so it must still be waiting
    release.set()
    waiter.join(10)
    assert not waiter.is_alive() and synced
    # Durable data is readable by a fresh reader while the log is still open.
    assert [s for s, _ in replayed(tmp_path)] == [1, 2]
    wal.close()


@pytest.mark.parametrize(
    ("fsync", "ahead"), [("always", False), ("always", True), ("group", False)]
)
def test_concurrent_appends_and_waits(
    tmp_path: Path, fsync: Literal["always", "group"], ahead: bool
) -> None:
    wal = WriteAheadLog(tmp_path, fsync=fsync, group_ms=0.5, segment_bytes=4000)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(1, 301, 3):
                seq = wal.append_many([record(i), record(i + 1), record(i + 2)])
                if ahead:  # as the daemon's writer does: the fsync runs while it learns
                    wal.sync_ahead()
                if i % 2:
                    wal.wait_durable(seq)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    def waiter() -> None:
        try:
            for _ in range(50):
                if wal.last_seq:
                    wal.wait_durable(wal.last_seq)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (writer, waiter, waiter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wal.wait_durable(300)
    wal.close()
    assert errors == []
    out = replayed(tmp_path)
    assert [s for s, _ in out] == list(range(1, 301))
    for seq, rec in out:
        assert_same(rec, record(seq))
    assert len(segments(tmp_path)) > 3


@pytest.mark.parametrize(
    ("fsync", "ahead"), [("always", False), ("always", True), ("group", False)]
)
def test_failed_fsync_raises_then_recovers_in_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: Literal["always", "group"], ahead: bool
) -> None:
    monkeypatch.setattr("service.wal._RETRY_S", 0.01)
    failing = threading.Event()
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if failing.is_set() and stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    wal = WriteAheadLog(tmp_path, fsync=fsync, group_ms=1)
    wal.append_many([record(1)])  # creates the segment before fsync starts failing
    wal.wait_durable(1)
    monkeypatch.setattr(os, "fsync", failing_fsync)
    failing.set()
    seq = wal.append_many([record(2)])
    if ahead:  # the background fsync fails: the wait reports it
        wal.sync_ahead()
    with pytest.raises(StorageError, match="^the data directory is full: syncing"):
        wal.wait_durable(seq)
    failing.clear()
    # The kernel may have dropped record 2's pages: it is never reported durable, even
    # once fsync works again (the group syncer retries by itself).
    for _ in range(3):
        threading.Event().wait(0.02)
        with pytest.raises(StorageError, match="syncing"):
            wal.wait_durable(seq)
    # Its retry goes to a fresh segment, so a hole left in the old one cannot hide it.
    assert wal.append_many([record(3)]) == 3
    wal.wait_durable(3)
    wal.close()
    old, new = segments(tmp_path)
    assert new.name == "wal-000000000003.log"
    assert [s for s, _ in replayed(tmp_path)] == [1, 2, 3]
    data = bytearray(old.read_bytes())
    data[-3] ^= 0xFF  # record 2 did not reach the disk intact
    old.write_bytes(bytes(data))
    assert [s for s, _ in replayed(tmp_path)] == [1, 3]


def test_a_batch_that_fails_midway_leaves_no_record(tmp_path: Path) -> None:
    """Records are written as they are packed; one that cannot be packed fails the whole
    batch, the ones written before it are cut off again."""
    wal = WriteAheadLog(tmp_path)
    big = record(1, dim=50_000)  # its latents are written from their own memory
    wal.append_many([big])
    with pytest.raises(TypeError):
        wal.append_many([record(2, dim=50_000), {"kind": "learn", "z": object()}])
    assert wal.last_seq == 1
    assert wal.bytes_written == sum(p.stat().st_size for p in segments(tmp_path))
    assert wal.append_many([record(2)]) == 2
    wal.close()
    out = replayed(tmp_path)
    assert [s for s, _ in out] == [1, 2]
    assert_same(out[0][1], big)
    assert_same(out[1][1], record(2))


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, fsync="group")
    wal.append_many([record(1)])
    wal.close()
    wal.close()
    with pytest.raises(ValueError, match="closed"):
        wal.append_many([record(2)])
    with pytest.raises(ValueError, match="fsync"):
        WriteAheadLog(tmp_path, fsync="sometimes")  # type: ignore[arg-type]


# -- a real, tiny filesystem ---------------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "fs", "64k") as mount:
        yield mount


def test_disk_full_fails_cleanly_and_recovers(small_fs: Path) -> None:
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"x" * 16384)
    wal = WriteAheadLog(small_fs / "wal")
    big = [record(i, dim=700) for i in range(1, 200)]  # ~2.8-8.4 kB each, not page sized
    appended = 0
    with pytest.raises(StorageError) as info:
        for rec in big:
            appended = wal.append_many([rec])
            wal.wait_durable(appended)
    assert str(info.value).startswith("the data directory is full: appending to")
    assert info.value.errno == 28
    assert wal.last_seq == appended and appended > 3
    size = segments(small_fs / "wal")[-1].stat().st_size
    assert size == wal.bytes_written  # no partial record left behind
    with pytest.raises(StorageError):
        wal.append_many([big[appended], big[appended + 1]])
    assert segments(small_fs / "wal")[-1].stat().st_size == size
    ballast.unlink()  # space returns
    assert wal.append_many([record(500)]) == appended + 1
    wal.wait_durable(appended + 1)
    wal.close()
    out = replayed(small_fs / "wal")
    assert [s for s, _ in out] == list(range(1, appended + 2))
    assert_same(out[-1][1], record(500))


def test_read_only_data_dir_fails_then_recovers(small_fs: Path) -> None:
    wal = WriteAheadLog(small_fs / "wal")
    wal.append_many([record(1)])
    wal.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        wal = WriteAheadLog(small_fs / "wal")  # opening and replaying only read
        assert [s for s, _ in wal.replay(0)] == [1]
        with pytest.raises(StorageError, match="^the data directory is read-only"):
            wal.append_many([record(2)])
        fresh = WriteAheadLog(small_fs / "other")  # a start-up on a read-only data dir
        fresh.advance_to(10)
        assert list(fresh.replay(10)) == []
        with pytest.raises(StorageError, match="read-only"):
            fresh.append_many([record(11)])
        fresh.close()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert wal.append_many([record(2)]) == 2
    wal.close()
    assert [s for s, _ in replayed(small_fs / "wal")] == [1, 2]
