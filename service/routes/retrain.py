"""POST /retrain and /retrain/{job}: background retraining from the replay memory."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from service.routes import Ready, errors, failed, require_token, usecases
from service.schemas import RetrainStatus

router = APIRouter(tags=["retraining"], dependencies=[Depends(require_token)])


def _call(request: Request, use_case: Callable[[], RetrainStatus], status: int) -> JSONResponse:
    try:
        out = use_case()
    except Exception as exc:
        raise failed(request, exc) from None
    return JSONResponse(out.model_dump(mode="json"), status)


@router.post(
    "/retrain",
    status_code=202,
    response_model=RetrainStatus,
    summary="Start retraining the head from memory",
    responses=errors(401, 409, 503),
)
async def start(request: Request, cases: Ready) -> JSONResponse:
    """Only strategies with a retrain capability (such as GDumb) can; others answer 409.
    Predictions keep being served while the job runs."""
    return _call(request, cases.retrain, 202)


@router.get(
    "/retrain/{job_id}",
    response_model=RetrainStatus,
    summary="State and progress of a retrain job",
    responses=errors(401, 404, 422),
)
async def status(request: Request, job_id: str) -> JSONResponse:
    return _call(request, lambda: usecases(request).retrain_status(job_id), 200)


@router.delete(
    "/retrain/{job_id}",
    status_code=202,
    response_model=RetrainStatus,
    summary="Ask a retrain job to stop",
    responses=errors(401, 404, 422),
)
async def cancel(request: Request, job_id: str) -> JSONResponse:
    return _call(request, lambda: usecases(request).cancel_retrain(job_id), 202)
