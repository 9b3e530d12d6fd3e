"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from service.observability.metrics import CONTENT_TYPE
from service.routes import errors, require_token

router = APIRouter(tags=["monitoring"], dependencies=[Depends(require_token)])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(401),
    },
)
async def metrics(request: Request) -> Response:
    # Rendering reads the runtime's stats under the learner's lock: off the event loop.
    body = await run_in_threadpool(request.app.state.telemetry.render)
    return Response(body, media_type=CONTENT_TYPE)
