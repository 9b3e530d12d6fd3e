"""POST /retrain and /retrain/{job}: background retraining from the replay memory."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from service.retrain import RetrainBusyError, RetrainJob
from service.routes import ApiError, Ready, errors, require_token, retry_after, runtime
from service.runtime import NotAcceptingError, RetrainUnsupportedError
from service.schemas import RetrainStatus

router = APIRouter(tags=["retraining"], dependencies=[Depends(require_token)])


def _status(job: RetrainJob) -> RetrainStatus:
    return RetrainStatus.model_validate(job.as_dict())


def _job(request: Request, job_id: str) -> RetrainJob:
    job = runtime(request).jobs.get(job_id)
    if job is None:
        raise ApiError(404, f"no retrain job {job_id!r}")
    return job


@router.post(
    "/retrain",
    status_code=202,
    response_model=RetrainStatus,
    summary="Start retraining the head from memory",
    responses=errors(401, 409, 503),
)
async def start(request: Request, rt: Ready) -> JSONResponse:
    """Only strategies with a retrain capability (such as GDumb) can; others answer 409.
    Predictions keep being served while the job runs."""
    try:
        job = rt.start_retrain()
    except (RetrainUnsupportedError, RetrainBusyError) as exc:
        raise ApiError(409, str(exc)) from None
    except NotAcceptingError as exc:
        raise ApiError(503, str(exc), headers=retry_after(request)) from None
    return JSONResponse(_status(job).model_dump(mode="json"), 202)


@router.get(
    "/retrain/{job_id}",
    response_model=RetrainStatus,
    summary="State and progress of a retrain job",
    responses=errors(401, 404, 422),
)
async def status(request: Request, job_id: str) -> RetrainStatus:
    return _status(_job(request, job_id))


@router.delete(
    "/retrain/{job_id}",
    status_code=202,
    response_model=RetrainStatus,
    summary="Ask a retrain job to stop",
    responses=errors(401, 404, 422),
)
async def cancel(request: Request, job_id: str) -> JSONResponse:
    job = _job(request, job_id)
    job.cancel()
    return JSONResponse(_status(job).model_dump(mode="json"), 202)
