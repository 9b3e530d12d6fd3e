"""The field types of request samples: labels, base64 or raw image bytes, and arrays as
nested lists or packed ``{dtype, shape, data}``, each validated with a sentence that names
what is wrong (see :mod:`service.schemas`)."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated, Any

import numpy as np
from pydantic import PlainValidator
from pydantic import WithJsonSchema as Schema
from pydantic_core import PydanticCustomError

from edgecl.types import Label, check_label

__all__ = ["ArrayField", "ImageField", "LabelField", "TaskField", "fail"]


_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64")
_NUMBER = {"type": "number"}
_INT64 = (-(2**63), 2**63 - 1)
_LABEL_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 256},
        {"type": "integer", "minimum": _INT64[0], "maximum": _INT64[1]},
    ]
}
_ARRAY_SPEC_SCHEMA = {
    "type": "object",
    "description": "A packed array: ``data`` is a flat list, raw little-endian bytes "
    "(msgpack) or their base64 (JSON).",
    "properties": {
        "dtype": {"enum": list(_DTYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 8},
        "data": {"anyOf": [{"type": "array", "items": _NUMBER}, {"type": "string"}]},
    },
    "required": ["dtype", "shape", "data"],
    "additionalProperties": False,
}
_ARRAY_SCHEMA = {"anyOf": [{"type": "array", "items": {}}, _ARRAY_SPEC_SCHEMA]}


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid", message)


def _label(value: Any) -> Label:
    try:
        label = check_label(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if isinstance(label, str) and len(label) > 256:
        raise _fail("label is longer than 256 characters")
    return label


def _task(value: Any) -> Label:
    """A task name, under the rules of labels (str of 1..256 characters, or an int)."""
    try:
        return _label(value)
    except PydanticCustomError as exc:
        raise _fail(str(exc).replace("label", "task")) from None


def _image(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise _fail(f"image must be base64 text (JSON) or bytes (msgpack), got {_kind(value)}")
    if value[:5].lower() == "data:":
        value = _data_url(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("image is not valid base64") from None


def _data_url(value: str) -> str:
    """The base64 of a ``data:image/...;base64,`` URL (as a browser's FileReader gives)."""
    head, comma, data = value.partition(",")
    if not comma:
        raise _fail("image is a data URL without a comma: give data:image/jpeg;base64,...")
    media, *params = head[5:].split(";")
    media = media.strip().lower()
    if not media.startswith("image/"):
        raise _fail(
            f"image is a data URL of type {media[:50] or '(none)'!r}, not an image: give "
            "data:image/jpeg;base64,... (or image/png, image/webp, ...)"
        )
    if "base64" not in (p.strip().lower() for p in params):
        raise _fail("image is a data URL without ;base64: give data:image/jpeg;base64,...")
    return data


_TYPE_NAMES: dict[type, str] = {
    bool: "bool",
    type(None): "null",
    list: "list",
    dict: "object",
}


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _nested(value: list[Any]) -> np.ndarray[Any, Any]:
    try:
        obj = np.asarray(value, dtype=object)
    except ValueError:
        raise _fail("array is ragged: every row must have the same length") from None
    kinds = {type(v) for v in obj.ravel().tolist()}
    if list in kinds:
        raise _fail("array is ragged: every row must have the same length")
    if not kinds <= {int, float}:
        names = sorted(_TYPE_NAMES.get(k, k.__name__) for k in kinds - {int, float})
        raise _fail(f"array must hold only numbers, found {', '.join(names)}")
    try:
        return obj.astype(np.float64 if float in kinds else np.int64)
    except OverflowError:
        raise _fail("array holds an integer too large for int64") from None


def _packed(value: dict[str, Any]) -> np.ndarray[Any, Any]:
    if set(value) != {"dtype", "shape", "data"}:
        raise _fail("a packed array has exactly the keys dtype, shape and data")
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if dtype not in _DTYPES:
        raise _fail(f"dtype must be one of {', '.join(_DTYPES)}")
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(type(n) is int and n >= 0 for n in shape)
    ):
        raise _fail("shape must be a list of at most 8 non-negative integers")
    size = math.prod(shape)
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _fail("data is not valid base64") from None
    if isinstance(data, bytes):
        if len(data) != size * np.dtype(dtype).itemsize:
            raise _fail(
                f"data has {len(data)} bytes; shape {shape} of {dtype} needs "
                f"{size * np.dtype(dtype).itemsize}"
            )
        return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    if not isinstance(data, list):
        raise _fail(f"data must be a flat list of numbers or bytes, got {_kind(data)}")
    flat = _nested(data)
    if flat.ndim != 1 or len(flat) != size:
        raise _fail(f"data must be a flat list of {size} numbers for shape {shape}")
    return flat.astype(dtype).reshape(shape)


def _array(value: Any) -> np.ndarray[Any, Any] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return _nested(value)
    if isinstance(value, dict):
        return _packed(value)
    raise _fail(f"expected a nested list or {{dtype, shape, data}}, got {_kind(value)}")


ImageField = Annotated[
    bytes | None,
    PlainValidator(_image),
    Schema(
        {
            "type": "string",
            "format": "byte",
            "description": "base64 in JSON (a data:image/...;base64, prefix is allowed), "
            "bytes in msgpack",
        }
    ),
]
ArrayField = Annotated[np.ndarray[Any, Any] | None, PlainValidator(_array), Schema(_ARRAY_SCHEMA)]
LabelField = Annotated[Label, PlainValidator(_label), Schema(_LABEL_SCHEMA)]
TaskField = Annotated[
    Label | None,
    PlainValidator(lambda v: None if v is None else _task(v)),
    Schema(
        {
            "anyOf": [*_LABEL_SCHEMA["anyOf"], {"type": "null"}],
            "description": "the task the sample belongs to (a str or an int, as labels); "
            "a strategy that learns per task needs it",
        }
    ),
]


def fail(message: str) -> PydanticCustomError:
    """A validation error that reads ``message``."""
    return _fail(message)
