"""Request bodies (HTTP) and payloads (MQTT) to validated models, with bounded work.

A body of a million empty samples must not become a million objects: while JSON or msgpack
is parsed, maps are counted and parsing stops past what the sample limit allows, and
arrays are bounded too (a msgpack ``[]`` is one byte that becomes a 56-byte list); the
``samples`` list is counted before any model is built; nesting too deep for the parser is
an error like any other; and error replies list a bounded number of problems.

>>> from service.schemas import PredictRequest
>>> parse(PredictRequest, b'{"samples": [{}, {}, {}]}', "json", max_samples=2)
Traceback (most recent call last):
...
service.bodies.BodyError: too many samples: 3 in one request, the limit is 2
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

import msgpack
import numpy as np
from pydantic import BaseModel, ValidationError

from service.schemas import ErrorItem, describe

Model = TypeVar("Model", bound=BaseModel)
Kind = Literal["json", "msgpack"]
#: Maps a sample may hold (itself and a packed array), and some for the envelope.
_MAPS_PER_SAMPLE, _MAPS_SPARE = 4, 16
#: Arrays one body may hold (about 15 MB of lists): 256 grayscale 224x224 images as nested
#: lists fit, or 5 RGB ones; larger inputs travel as image bytes or packed arrays.
MAX_ARRAYS = 250_000
#: The deepest JSON a body may nest (an image as nested lists is 3 inside a sample). The
#: parser itself recurses in C up to the interpreter's limit, and Python code that runs
#: there (a garbage collector callback: the daemon times its pauses) fails for want of
#: stack: deeper bodies are refused before parsing.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BodyError(ValueError):
    """A body that cannot become a request: ``status`` 400 (unparseable multipart), 413
    (too large) or 422."""

    def __init__(self, status: int, detail: str, errors: list[ErrorItem] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


class _TooMany(Exception):
    pass


class _TooDeep(Exception):
    pass


def loads(raw: bytes | bytearray, kind: Kind, max_samples: int, what: str = "body") -> Any:
    """Plain data from JSON or msgpack; ``BodyError`` as soon as it holds more maps than
    ``max_samples`` samples could, or is not valid, or nests too deep (``what`` names the
    bytes in the sentence: a body, a payload)."""
    limit, maps, arrays = _MAPS_PER_SAMPLE * max_samples + _MAPS_SPARE, 0, 0

    def counted(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        nonlocal maps
        maps += 1
        if maps > limit:
            raise _TooMany
        return dict(pairs)

    def listed(items: list[Any]) -> list[Any]:
        nonlocal arrays
        arrays += 1
        if arrays > MAX_ARRAYS:
            raise _TooMany
        return items

    name = "JSON" if kind == "json" else "msgpack"
    try:
        if kind == "json":
            # JSON has no array hook: a "[" inside a string counts too, an upper bound.
            opened = raw.count(b"[")
            if opened > MAX_ARRAYS:
                raise _TooMany
            if (
                opened + raw.count(b"{") > MAX_JSON_DEPTH
                and json_depth(raw, limit) > MAX_JSON_DEPTH
            ):
                raise _TooDeep
            return json.loads(raw, object_pairs_hook=counted)
        return msgpack.unpackb(raw, object_pairs_hook=counted, list_hook=listed)
    except _TooMany:
        raise BodyError(
            413,
            f"too many samples: the body holds more than {limit} objects or "
            f"{MAX_ARRAYS} arrays, and one request carries at most {max_samples} samples",
        ) from None
    except (RecursionError, _TooDeep):
        raise BodyError(422, f"{what} is not valid {name}: it is nested too deeply") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        why = str(exc) if kind == "json" else msgpack_problem(exc)
        raise BodyError(422, f"{what} is not valid {name}: {why[:200]}") from None


def json_depth(raw: bytes | bytearray, max_objects: int) -> int:
    """How deep JSON text nests its arrays and objects, or more (brackets in strings do
    not count; text that is not JSON may count deeper); ``_TooMany`` past ``max_objects``
    objects. C-speed passes, and one over the brackets alone.

    >>> json_depth(b'{"a": [[1, 2], "]]"], "b": {}}', 10)
    3
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"{") > max_objects:
        raise _TooMany
    b = np.frombuffer(brackets, np.uint8)
    steps = np.where((b == ord("[")) | (b == ord("{")), 1, -1)
    return int(np.cumsum(steps).max(initial=0))


def msgpack_problem(exc: Exception) -> str:
    """What msgpack's error means, in words (its own texts are terse or misleading).

    >>> try:
    ...     msgpack.unpackb(b"hello")
    ... except ValueError as exc:
    ...     msgpack_problem(exc)
    'more bytes follow its first object (104); one map is expected'
    """
    if isinstance(exc, msgpack.ExtraData):
        first = repr(exc.unpacked)[:40]
        return f"more bytes follow its first object ({first}); one map is expected"
    if isinstance(exc, msgpack.FormatError):
        return "it holds a byte that begins no msgpack type (such as 0xc1)"
    if isinstance(exc, msgpack.StackError):
        return "it is nested too deeply"
    text = str(exc)
    if "incomplete input" in text or "exceeds max_" in text:
        return "it ends before its first object does (cut short?)"
    return text


def validate(model: type[Model], data: Any, max_samples: int) -> Model:
    """Validate plain data (all or nothing), counting the samples first."""
    samples = data.get("samples") if isinstance(data, dict) else None
    if isinstance(samples, list) and len(samples) > max_samples:
        raise BodyError(
            413, f"too many samples: {len(samples)} in one request, the limit is {max_samples}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        summary, items = describe(exc)
        raise BodyError(422, summary, items) from None
    except RecursionError:
        raise BodyError(422, "body is nested too deeply") from None


def parse(model: type[Model], raw: bytes | bytearray, kind: Kind, max_samples: int) -> Model:
    """:func:`loads` then :func:`validate`."""
    return validate(model, loads(raw, kind, max_samples), max_samples)
