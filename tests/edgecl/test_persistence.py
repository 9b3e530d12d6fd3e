"""Snapshots round-trip whatever their size, and damage is a ValueError."""

from __future__ import annotations

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
