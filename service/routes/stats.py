"""GET /stats: what the learner knows and how well it does (test-then-train)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.observability.stats import Stats
from service.routes import errors, require_token, runtime

router = APIRouter(tags=["monitoring"], dependencies=[Depends(require_token)])


@router.get("/stats", response_model=Stats, responses=errors(401))
async def stats(request: Request) -> JSONResponse:
    return JSONResponse((await snapshot(request)).body())


async def snapshot(request: Request) -> Stats:
    """The runtime's stats (the dashboard shows the same)."""
    # stats() waits for the learner's lock: keep that wait off the event loop.
    return await run_in_threadpool(runtime(request).stats)
