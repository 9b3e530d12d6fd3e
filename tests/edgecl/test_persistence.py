"""Snapshots round-trip whatever their size, and damage is a ValueError."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from edgecl import codec, persistence


def test_an_array_over_100_mib_round_trips() -> None:
    # msgpack's Unpacker refuses more than 100 MiB by default: 10,300 x 1280 float64 is
    # SLDA's class means past 10,240 classes.
    big = np.arange(10300 * 1280, dtype=np.float64).reshape(10300, 1280)
    data = persistence.dump_snapshot({"m": big, "n": 1})
    assert len(data) > 100 << 20
    out = persistence.load_snapshot(data)
    assert out["n"] == 1 and out["m"].shape == big.shape and out["m"].dtype == big.dtype
    assert np.array_equal(out["m"], big)


def test_a_malformed_array_head_is_a_value_error() -> None:
    import msgpack

    body = msgpack.packb(msgpack.ExtType(42, b"\xc1"))
    with pytest.raises(ValueError, match="malformed header"):
        codec.unpackb(body)


def test_a_check_reads_what_a_load_reads_without_the_arrays() -> None:
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 1, "names": ["a"]}
    data = persistence.dump_snapshot(state)
    assert data == b"".join(persistence.snapshot_parts(state))
    assert persistence.check_snapshot(data) == {"w": None, "n": 1, "names": ["a"]}


def test_a_check_refuses_an_array_its_load_would_refuse() -> None:
    # An array of 6 float32 whose head claims shape (7,), under a matching checksum.
    bad = msgpack.ExtType(42, codec.packb(["float32", [7]]) + bytes(24))
    body = msgpack.packb({"schema": persistence.SCHEMA_VERSION, "state": {"w": bad}})
    data = b"EDGECL1\n" + zlib.crc32(body).to_bytes(4, "little") + body
    for read in (persistence.load_snapshot, persistence.check_snapshot):
        with pytest.raises(ValueError, match="snapshot is corrupt"):
            read(data)


def test_a_streamed_snapshot_is_the_one_built_whole_and_any_damage_is_found(
    tmp_path: Path,
) -> None:
    # Arrays large enough to be written from their own memory, beside small ones and
    # nested containers with the keys and values msgpack takes.
    state = {
        "codes": np.arange(300_000, dtype=np.int8).reshape(1000, 300),
        "big_endian": np.arange(20_000, dtype=">f4"),
        "nested": {"w": np.ones(3, np.float32), 5: b"raw", "t": (1, None, 2.5, "x")},
    }
    path = tmp_path / "snap"
    size = persistence.write_snapshot(path, state)
    data = path.read_bytes()
    assert size == len(data) and data == persistence.dump_snapshot(state)
    assert persistence.check_file(path)["nested"] == {
        "w": None,
        5: b"raw",
        "t": [1, None, 2.5, "x"],
    }
    loaded = persistence.load(path)
    np.testing.assert_array_equal(loaded["big_endian"], state["big_endian"])
    damaged = [data[:-1], data + b"\x00", data[:5], b""]
    for offset in (3, 10, 200, len(data) // 2, len(data) - 1):
        flipped = bytearray(data)
        flipped[offset] ^= 0x55
        damaged.append(bytes(flipped))
    for bad in damaged:
        (tmp_path / "bad").write_bytes(bad)
        with pytest.raises(ValueError, match="snapshot"):
            persistence.check_file(tmp_path / "bad")


def test_a_file_check_reads_every_kind_of_value_as_a_check_in_memory_does(
    tmp_path: Path,
) -> None:
    state: dict[str, Any] = {
        "ints": [
            0,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            2**32,
            2**63,
            -1,
            -32,
            -33,
            -129,
            -(2**40),
        ],
        "floats": [0.5, -1e300, float("inf")],
        "flags": [None, True, False],
        "text": ["", "é", "x" * 31, "y" * 32, "z" * 300, "w" * 70_000],
        "bytes": [b"", b"\x00" * 300, b"\x01" * 70_000],
        "wide": {f"k{i}": i for i in range(20)},
        "long": list(range(70_000)),
        "5": {5: "an int key", "nested": [{"a": np.zeros((0, 3), np.float32)}]},
        "arrays": [np.arange(n, dtype=dt) for n in (1, 2, 4, 300, 70_000) for dt in ("u1", "f8")],
    }
    persistence.write_snapshot(tmp_path / "s", state)
    assert persistence.check_file(tmp_path / "s") == persistence.check_snapshot(
        persistence.dump_snapshot(state)
    )


def test_a_file_check_refuses_an_array_its_load_would_refuse(tmp_path: Path) -> None:
    for head, values in ((["float32", [7]], 24), (["float32", [2, 3]], 25), (["object", [1]], 8)):
        bad = msgpack.ExtType(42, codec.packb(head) + bytes(values))
        body = msgpack.packb({"schema": persistence.SCHEMA_VERSION, "state": {"w": bad}})
        (tmp_path / "bad").write_bytes(b"EDGECL1\n" + zlib.crc32(body).to_bytes(4, "little") + body)
        with pytest.raises(ValueError, match="snapshot is corrupt"):
            persistence.check_file(tmp_path / "bad")
