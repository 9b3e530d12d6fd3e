"""HTTP routers (one per resource) and what they share: auth, body decoding, replies."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import Future
from typing import Annotated, Any, TypeVar

import msgpack
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from service.bodies import BodyError, Kind, parse, validate
from service.budget import AsyncBudget
from service.errors import BUG, outcome
from service.routes.form import fields, form_body
from service.runtime import LearnerRuntime
from service.schemas import ErrorItem, ErrorReply
from service.settings import Settings
from service.usecases import UseCases

MSGPACK = "application/msgpack"
#: Bodies up to this size (a small image, a prediction) are parsed in the event loop: less
#: work than handing them to a worker thread and back, and at most about 1 ms (75 samples of
#: one feature each, the worst case).
INLINE_BODY_BYTES = 1536
Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")


class ApiError(Exception):
    """An error reply: status, a sentence, optional per-field items and headers."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[ErrorItem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers

    def response(self) -> JSONResponse:
        body = ErrorReply(detail=self.detail, errors=self.errors)
        return JSONResponse(body.model_dump(exclude_none=True), self.status, self.headers)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorReply, "description": description}


#: Documented error replies, picked per route.
ERRORS: dict[int, dict[str, Any]] = {
    401: _error("Missing or wrong bearer token (when EDGECL_API_TOKEN is set)."),
    404: _error("No such job."),
    409: _error("The request conflicts with the model's state."),
    413: _error("Body larger than the limit, or too many samples in one request."),
    415: _error("Unsupported content type."),
    422: _error("Invalid body; the message names the field and the sample index."),
    503: _error("Not ready, shutting down, or the learn queue is full (see Retry-After)."),
    507: _error("The samples could not be stored (disk full or read-only)."),
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in codes}


def request_body(schema: str, with_label: bool) -> dict[str, Any]:
    """OpenAPI ``requestBody``: JSON and msgpack share ``schema``; the multipart form is
    what :func:`read_samples` takes (files, and a label per file or one for all)."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    texts = {"type": "array", "items": {"type": "string"}}
    types: dict[str, Any] = {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "label": texts,
        "id": texts,
        "task": texts,
        "top_k": {"type": "integer", "minimum": 1},
        "threshold": {"type": "number"},
    }
    required = ["file", "label"] if with_label else ["file"]
    form = {
        "type": "object",
        "properties": {name: types[name] for name in fields(with_label)},
        "required": required,
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ref},
                MSGPACK: {"schema": ref},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def runtime(request: Request) -> LearnerRuntime:
    rt: LearnerRuntime = request.app.state.runtime
    return rt


def usecases(request: Request) -> UseCases:
    cases: UseCases = request.app.state.usecases
    return cases


def settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


_bearer = HTTPBearer(auto_error=False, description="Set EDGECL_API_TOKEN to require it.")


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token = settings(request).api_token
    if token is None:
        return
    given = b"" if credentials is None else credentials.credentials.encode()
    if not secrets.compare_digest(given, token.get_secret_value().encode()):
        raise ApiError(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


async def require_ready(request: Request) -> UseCases:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request.
    cases = usecases(request)
    if not cases.ready:
        raise ApiError(503, "the service is starting or stopping", headers=retry_after(request))
    return cases


#: A route parameter that is the use cases, once the runtime is ready (503 otherwise).
Ready = Annotated[UseCases, Depends(require_ready)]


def retry_after(request: Request) -> dict[str, str]:
    return {"Retry-After": str(settings(request).retry_after_s)}


def failed(request: Request, exc: Exception) -> ApiError:
    """The reply to a failure, as the table in service/errors.py says; a bug is raised
    again (500, logged with its traceback)."""
    result = outcome(exc)
    if result is BUG:
        raise exc
    headers = retry_after(request) if result.retry_after else None
    return ApiError(result.status, str(exc), getattr(exc, "errors", None), headers)


async def read_samples(request: Request, model: type[Model], with_label: bool) -> Model:
    """Read a JSON, msgpack or multipart body and validate it (all or nothing).

    Bodies read and parsed at once share a byte budget (a share of the declared length,
    taken before reading), so many clients cannot make the daemon hold many bodies and
    what they expand into; a body waiting for its share stays in its socket. Parsing and
    validation of all but small bodies run in a worker thread: a big body must not stall the
    event loop."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json", MSGPACK, "application/x-msgpack"):
        raise ApiError(
            415,
            f"content type {kind or '(none)'!r} is not supported; send application/json, "
            f"{MSGPACK} or multipart/form-data",
        )
    limit = settings(request).max_samples_per_request
    declared = request.headers.get("content-length", "")
    size = min(int(declared), settings(request).max_body_bytes) if declared.isdigit() else 0
    gate: AsyncBudget = request.app.state.body_budget
    async with gate.take(size or settings(request).max_body_bytes):
        try:
            if kind == "multipart/form-data":
                try:
                    fields_in = await request.form()
                except ValueError as exc:  # python-multipart's, which Starlette passes on
                    raise BodyError(400, f"the multipart body could not be parsed: {exc}") from None
                payload = await form_body(fields_in, with_label, limit)
                return await in_worker(validate, model, payload, limit)
            # Read here rather than with request.body(), which keeps the bytes on the
            # request until the reply: a queued learn request would hold its body twice.
            # One growing buffer: the chunks kept to be joined would be a second copy,
            # left behind as holes in the heap.
            raw = bytearray()
            async for chunk in request.stream():
                raw += chunk
            form: Kind = "json" if kind == "application/json" else "msgpack"
            if len(raw) <= INLINE_BODY_BYTES:
                return parse(model, raw, form, limit)
            return await in_worker(parse, model, raw, form, limit)
        except BodyError as exc:
            raise failed(request, exc) from None


async def in_worker(work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in a worker thread. A ``ValueError`` (bad input) comes back without
    the worker's frames: they can hold a whole body or decoded images, and a reference
    cycle through the thread pool would keep them alive until a full garbage collection."""

    def run() -> tuple[T | None, ValueError | None]:
        try:
            return work(*args), None
        except ValueError as exc:
            exc.__context__ = exc.__cause__ = None
            return None, exc.with_traceback(None)

    value, error = await run_in_threadpool(run)
    if error is not None:
        raise error
    return value  # type: ignore[return-value]


async def answer(
    request: Request,
    model: type[Model],
    with_label: bool,
    use_case: Callable[[Model], BaseModel | Future[Any]],
) -> Response:
    """Decode the body, run the use case in a worker thread (awaiting what it queued),
    encode its reply; a failure becomes the reply the error table says."""
    body: Model | None = await read_samples(request, model, with_label)
    try:
        out = await in_worker(use_case, body)
        body = None  # the parsed samples (a learn body's arrays) need not wait for the reply
        done: BaseModel = await asyncio.wrap_future(out) if isinstance(out, Future) else out
    except Exception as exc:
        raise failed(request, exc) from None
    return reply(request, done)


def reply(request: Request, body: BaseModel, status: int = 200) -> Response:
    """JSON, or msgpack when the client asks for it in ``Accept``."""
    data = body.model_dump(mode="json")
    if MSGPACK in request.headers.get("accept", ""):
        return Response(msgpack.packb(data), status, media_type=MSGPACK)
    return JSONResponse(data, status)


def msgpack_too(model: type[BaseModel]) -> dict[str, Any]:
    """Response docs: the reply model as JSON (from response_model) and as msgpack."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"content": {MSGPACK: {"schema": ref}}}
