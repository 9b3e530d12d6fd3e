"""POST /predict: decode the body, predict (embedded in a worker thread), encode the reply."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.routes import (
    Ready,
    errors,
    failed,
    in_worker,
    msgpack_too,
    read_samples,
    reply,
    request_body,
    require_token,
)
from service.schemas import PredictReply, PredictRequest

router = APIRouter(tags=["prediction"], dependencies=[Depends(require_token)])

_FORM = {
    "type": "object",
    "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "top_k": {"type": "integer", "minimum": 1},
    },
    "required": ["file"],
}


@router.post(
    "/predict",
    response_model=PredictReply,
    summary="Predict labels",
    responses={200: msgpack_too(PredictReply), **errors(401, 409, 413, 415, 422, 503)},
    openapi_extra=request_body("PredictRequest", _FORM),
)
async def predict(request: Request, cases: Ready) -> Response:
    """The best label, its score and the ``top_k`` labels of each sample."""
    body = await read_samples(request, PredictRequest, with_label=False)
    try:
        return reply(request, await in_worker(cases.predict, body))
    except Exception as exc:
        raise failed(request, exc) from None
