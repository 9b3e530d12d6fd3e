"""POST /learn: decode, embed in a worker thread, queue for the writer, await the result."""

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
async def learn(request: Request, rt: Ready) -> Response:
    """Learn every sample or none. A sample whose ``id`` was seen before is acknowledged
    but not learned again. Multipart: ``curl -F file=@x.png -F label=sneaker``."""
    body = await read_samples(request, LearnRequest, with_label=True)
    inputs = [s.to_input() for s in body.samples]
    labels = [s.label for s in body.samples]
    ids = [s.id for s in body.samples]
    try:
        try:
            z, raw = await in_worker(rt.embed_for_learning, inputs)
        except ValueError:
            request.app.state.telemetry.rejected("http", "invalid", len(inputs))
            raise
        future = rt.submit_learn(z, labels, ids, source="http", inputs=raw)
        result = await asyncio.wrap_future(future)
    except Exception as exc:
        raise failed(request, exc) from None
    out = LearnReply(
        accepted=result.accepted,
        duplicates=result.duplicates,
        model_version=result.model_version,
        classes=result.classes,
    )
    return reply(request, out)
