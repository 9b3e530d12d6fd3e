"""POST /predict: decode, embed in a worker thread, score on a consistent head."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from edgecl.learner import NotFittedError
from service.routes import (
    ApiError,
    Ready,
    errors,
    in_worker,
    msgpack_too,
    read_samples,
    reply,
    request_body,
    require_token,
)
from service.schemas import PredictionOut, PredictReply, PredictRequest, ScoredLabel

router = APIRouter(tags=["prediction"], dependencies=[Depends(require_token)])

_FORM = {
    "type": "object",
    "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "top_k": {"type": "integer", "minimum": 1},
    },
    "required": ["file"],
}
_NOTHING_LEARNED = "nothing has been learned yet; POST /learn some labelled samples first"


@router.post(
    "/predict",
    response_model=PredictReply,
    summary="Predict labels",
    responses={200: msgpack_too(PredictReply), **errors(401, 409, 413, 415, 422, 503)},
    openapi_extra=request_body("PredictRequest", _FORM),
)
async def predict(request: Request, rt: Ready) -> Response:
    """The best label, its score and the ``top_k`` labels of each sample."""
    body = await read_samples(request, PredictRequest, with_label=False)
    if not rt.has_classes:
        raise ApiError(409, _NOTHING_LEARNED)
    inputs = [s.to_input() for s in body.samples]
    try:
        z = await in_worker(rt.embed, inputs)
        result = await in_worker(rt.predict, z, body.top_k)
    except ValueError as exc:  # SampleError names the sample
        raise ApiError(422, str(exc)) from None
    except NotFittedError:
        raise ApiError(409, _NOTHING_LEARNED) from None
    out = PredictReply(
        predictions=[
            PredictionOut(
                label=p.label,
                score=p.score,
                top_k=[ScoredLabel(label=label, score=score) for label, score in p.top_k],
            )
            for p in result.predictions
        ],
        model_version=result.model_version,
    )
    return reply(request, out)
