"""POST /predict: the predict use case over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.routes import Ready, answer, errors, msgpack_too, request_body, require_token
from service.schemas import PredictReply, PredictRequest

router = APIRouter(tags=["prediction"], dependencies=[Depends(require_token)])


@router.post(
    "/predict",
    response_model=PredictReply,
    summary="Predict labels",
    responses={200: msgpack_too(PredictReply), **errors(401, 409, 413, 415, 422, 503)},
    openapi_extra=request_body("PredictRequest", with_label=False),
)
async def predict(request: Request, cases: Ready) -> Response:
    """The best label, its score and the ``top_k`` labels of each sample."""
    return await answer(request, PredictRequest, False, cases.predict)
