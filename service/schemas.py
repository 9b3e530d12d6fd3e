"""Request and reply models shared by JSON, msgpack and multipart bodies.

Validation is strict (a boolean is not a number) and every error names the field and the
sample index, e.g. ``samples[2].features[0]: must be a number, got bool``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.fields import ArrayField, ImageField, LabelField, TaskField, fail
from service.inputs import SampleInput


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
            raise fail("give exactly one of image, array or features")
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
    task: TaskField = None


class PredictSample(SampleIn):
    task: TaskField = None


class LearnRequest(BaseModel):
    """``{"samples": [{"features": [...], "label": "cat", "id": "k1"}]}``"""

    model_config = ConfigDict(strict=True, extra="forbid")
    samples: list[LearnSample] = Field(min_length=1)


class PredictRequest(BaseModel):
    """``{"samples": [...], "top_k": 3}``"""

    model_config = ConfigDict(strict=True, extra="forbid")
    samples: list[PredictSample] = Field(min_length=1)
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
    task: TaskField = Field(
        default=None,
        description="the task the prediction was made in, given or inferred (null: the "
        "strategy does not predict per task)",
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
