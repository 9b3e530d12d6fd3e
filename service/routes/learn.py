"""POST /learn: the learn use case over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.routes import Ready, answer, errors, msgpack_too, request_body, require_token
from service.schemas import LearnReply, LearnRequest

router = APIRouter(tags=["learning"], dependencies=[Depends(require_token)])


@router.post(
    "/learn",
    response_model=LearnReply,
    summary="Learn labelled samples",
    responses={200: msgpack_too(LearnReply), **errors(401, 413, 415, 422, 503, 507)},
    openapi_extra=request_body("LearnRequest", with_label=True),
)
async def learn(request: Request, cases: Ready) -> Response:
    """Learn every sample or none. A sample whose ``id`` was seen before is acknowledged
    but not learned again. Multipart: ``curl -F file=@x.png -F label=sneaker``."""
    return await answer(request, LearnRequest, True, lambda body: cases.learn(body, "http"))
