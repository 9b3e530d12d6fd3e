"""POST /learn: decode the body, learn it (embedded in a worker thread), encode the reply."""

from __future__ import annotations

import asyncio

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
from service.schemas import LearnReply, LearnRequest

router = APIRouter(tags=["learning"], dependencies=[Depends(require_token)])

_FORM = {
    "type": "object",
    "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "label": {"type": "array", "items": {"type": "string"}},
        "id": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["file", "label"],
}


@router.post(
    "/learn",
    response_model=LearnReply,
    summary="Learn labelled samples",
    responses={200: msgpack_too(LearnReply), **errors(401, 413, 415, 422, 503, 507)},
    openapi_extra=request_body("LearnRequest", _FORM),
)
async def learn(request: Request, cases: Ready) -> Response:
    """Learn every sample or none. A sample whose ``id`` was seen before is acknowledged
    but not learned again. Multipart: ``curl -F file=@x.png -F label=sneaker``."""
    body = await read_samples(request, LearnRequest, with_label=True)
    try:
        future = await in_worker(cases.learn, body, "http")
        out: LearnReply = await asyncio.wrap_future(future)
        return reply(request, out)
    except Exception as exc:
        raise failed(request, exc) from None
