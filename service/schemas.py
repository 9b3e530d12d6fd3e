"""Request and reply models shared by JSON, msgpack and multipart bodies.

Validation is strict (a boolean is not a number) and every error names the field and the
sample index, e.g. ``samples[2].features[0]: must be a number, got bool``.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic import WithJsonSchema as Schema
from pydantic_core import PydanticCustomError

from edgecl.types import Label, check_label
from service.inputs import SampleInput

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


def _image(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise _fail(f"image must be base64 text (JSON) or bytes (msgpack), got {_kind(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("image is not valid base64") from None


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
    Schema({"type": "string", "format": "byte", "description": "base64 in JSON, bytes in msgpack"}),
]
ArrayField = Annotated[np.ndarray[Any, Any] | None, PlainValidator(_array), Schema(_ARRAY_SCHEMA)]
LabelField = Annotated[Label, PlainValidator(_label), Schema(_LABEL_SCHEMA)]


class SampleIn(BaseModel):
    """One input: exactly one of ``image``, ``array`` or ``features``.

    >>> SampleIn.model_validate({"features": [0.5, 1]}).to_input().kind
    'features'
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    image: ImageField = None
    array: ArrayField = None
    features: ArrayField = None

    @model_validator(mode="after")
    def _one_input(self) -> SampleIn:
        given = [self.image is not None, self.array is not None, self.features is not None]
        if sum(given) != 1:
            raise _fail("give exactly one of image, array or features")
        return self

    def to_input(self) -> SampleInput:
        if self.image is not None:
            return SampleInput("image", self.image)
        if self.array is not None:
            return SampleInput("array", self.array)
        assert self.features is not None  # guaranteed by _one_input
        return SampleInput("features", self.features)


class LearnSample(SampleIn):
    label: LabelField
    id: str | None = Field(default=None, min_length=1, max_length=128)


class LearnRequest(BaseModel):
    """``{"samples": [{"features": [...], "label": "cat", "id": "k1"}]}``"""

    model_config = ConfigDict(strict=True, extra="forbid")
    samples: list[LearnSample] = Field(min_length=1)


class PredictRequest(BaseModel):
    """``{"samples": [...], "top_k": 3}``"""

    model_config = ConfigDict(strict=True, extra="forbid")
    samples: list[SampleIn] = Field(min_length=1)
    top_k: int = Field(default=3, ge=1, le=1000)
    threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="novelty above which a prediction says `unknown`; default: the "
        "daemon's (novelty_threshold, else fitted to accept novelty_acceptance of "
        "held-back known samples)",
    )


# -- replies ---------------------------------------------------------------------------
class LearnReply(BaseModel):
    accepted: int = Field(description="samples acknowledged (duplicates included)")
    duplicates: int = Field(description="samples whose id was seen before: not learned again")
    model_version: int
    classes: int


class ScoredLabel(BaseModel):
    label: LabelField
    score: float


class PredictionOut(ScoredLabel):
    top_k: list[ScoredLabel]
    novelty: float = Field(description="how unlike every taught class the input is (higher: more)")
    unknown: bool = Field(
        description="novelty above the threshold: the input is likely of no taught class "
        "(label is still the closest one)"
    )


class PredictReply(BaseModel):
    predictions: list[PredictionOut]
    model_version: int
    threshold: float | None = Field(
        description="the novelty threshold used (null: none yet, nothing is called unknown)"
    )


class RetrainStatus(BaseModel):
    job: str
    state: Literal["running", "succeeded", "failed", "cancelled"]
    progress: float
    error: str | None = None
    started: float
    finished: float | None = None


class BackboneCheck(BaseModel):
    """The start-up self-check of the int8 backbone against the build's fp32 latents."""

    passed: bool = Field(description="the session serving now reached the threshold")
    session: str = Field(
        description="`optimized`: ONNX Runtime's fused int8 kernels; `reference`: they failed "
        "the check, graph optimisations are off"
    )
    images: int
    mean_cosine: float
    min_cosine: float
    threshold: float
    reason: str | None = Field(default=None, description="why the session was switched")
    optimized: dict[str, Any] | None = Field(
        default=None, description="the optimized session's figures, when it was switched"
    )


class Health(BaseModel):
    status: str


class Ready(Health):
    backbone_check: BackboneCheck | None = Field(
        default=None, description="the int8 backbone's start-up self-check (absent: none ran)"
    )


class ErrorItem(BaseModel):
    loc: str
    msg: str


class ErrorReply(BaseModel):
    detail: str
    errors: list[ErrorItem] | None = None


def where(loc: tuple[int | str, ...]) -> str:
    """``("samples", 3, "features")`` → ``samples[3].features``.

    >>> where(("samples", 3, "features", 0))
    'samples[3].features[0]'
    """
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


#: Problems listed one by one in an error reply; the summary counts the rest.
MAX_ERROR_ITEMS = 20


def describe(exc: ValidationError) -> tuple[str, list[ErrorItem]]:
    """A one-line summary and one item per problem (the first :data:`MAX_ERROR_ITEMS`),
    each naming field and sample index."""
    errors = exc.errors(include_url=False)
    items = []
    for err in errors[:MAX_ERROR_ITEMS]:
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        items.append(ErrorItem(loc=where(tuple(err["loc"]))[:200], msg=msg[:200]))
    summary = "; ".join(f"{i.loc}: {i.msg}" for i in items[:5])
    if len(errors) > 5:
        summary += f"; and {len(errors) - 5} more"
    return summary, items
