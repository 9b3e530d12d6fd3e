"""schemathesis hooks: send and read ``application/msgpack`` bodies like JSON ones."""

from __future__ import annotations

from typing import Any

import msgpack
import schemathesis


def _fit(value: Any) -> Any:
    """Integers msgpack cannot carry (beyond 64 bits) become infinities: still invalid."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float("inf") if value > 0 else float("-inf")
    if isinstance(value, list):
        return [_fit(v) for v in value]
    if isinstance(value, dict):
        return {k: _fit(v) for k, v in value.items()}
    return value


@schemathesis.serializer("application/msgpack")
def to_msgpack(ctx: Any, value: Any) -> bytes:
    out: bytes = msgpack.packb(_fit(value))
    return out


@schemathesis.deserializer("application/msgpack")
def from_msgpack(ctx: Any, response: Any) -> Any:
    return msgpack.unpackb(response.content)
