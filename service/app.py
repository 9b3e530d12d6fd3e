"""``create_app(settings, runtime)``: the FastAPI app around one LearnerRuntime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from service.body_limit import BodyLimit
from service.budget import AsyncBudget
from service.observability.history import Sampler, TimeSeries
from service.observability.history_file import NAME as HISTORY_FILE
from service.observability.metrics import RequestMetrics, Telemetry
from service.routes import (
    ApiError,
    dashboard,
    docs,
    health,
    learn,
    metrics,
    predict,
    retrain,
    root,
    stats,
)
from service.runtime import LearnerRuntime
from service.schemas import ErrorItem, LearnRequest, PredictRequest, where
from service.settings import Settings
from service.usecases import UseCases

log = logging.getLogger("edgecl.app")


def _openapi(app: FastAPI, latent_shape: tuple[int, ...]) -> dict[str, Any]:
    """The generated schema plus the request models that routes decode themselves; a flat
    ``features`` vector is documented with this model's latent size."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (LearnRequest, PredictRequest):
            spec = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(spec.pop("$defs", {}))
            components[model.__name__] = spec
        if len(latent_shape) == 1:
            size = latent_shape[0]
            vector = {"type": "array", "items": {"type": "number"}, "minItems": size}
            vector["maxItems"] = size
            for name in ("SampleIn", "LearnSample", "PredictSample"):
                if name not in components:
                    continue
                features = components[name]["properties"]["features"]
                features["anyOf"][0] = vector
        # Our handler answers request validation errors with ErrorReply, not these.
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def _install_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        items = [ErrorItem(loc=where(tuple(e["loc"])), msg=e["msg"]) for e in exc.errors()]
        detail = "; ".join(f"{i.loc}: {i.msg}" for i in items)
        return ApiError(422, detail, items).response()

    async def disconnected(request: Request, exc: Exception) -> Response:
        # Routine on a flaky network: one line, not a traceback at ERROR.
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.info("%s went away before sending its whole request to %s", client, request.url.path)
        return Response(status_code=400)  # never sent: the connection is gone

    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def create_app(settings: Settings, runtime: LearnerRuntime) -> FastAPI:
    """The app; its lifespan starts the runtime (restore) and stops it (drain, checkpoint).

    >>> from edgecl import Learner, strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> rt = LearnerRuntime(Learner(IdentityBackbone(2), strategies.create("ncm")))
    >>> sorted(create_app(Settings(), rt).openapi()["paths"])[:4]
    ['/dashboard/data', '/health/live', '/health/ready', '/learn']
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fleet = app.state.fleet
        if fleet is not None:  # before the start: every checkpoint keeps the fleet's memory
            await run_in_threadpool(fleet.attach)
        await run_in_threadpool(runtime.start)
        log.info("ready: %s", runtime.learner.strategy.name)
        mqtt = app.state.mqtt
        sampler.start()
        telemetry.gc_pauses.start()
        try:
            if mqtt is not None:
                await run_in_threadpool(mqtt.start)
            if fleet is not None:
                fleet.start()
            yield
        finally:
            if fleet is not None:
                fleet.stop()
            sampler.stop()
            telemetry.gc_pauses.stop()
            if mqtt is not None:  # first: nothing may be acknowledged once the runtime stops
                await run_in_threadpool(mqtt.stop)
            await run_in_threadpool(runtime.stop, settings.durability.shutdown_timeout_s)
            log.info("stopped after draining the queue")

    import edgecl

    app = FastAPI(
        title="edgecl",
        version=edgecl.__version__,
        description="Streaming edge continual learning: learn new classes while predicting.",
        lifespan=lifespan,
        # Served by service/routes/docs.py, behind the token.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    # Bodies read and parsed at once (HTTP): up to two of the largest size.
    app.state.body_budget = AsyncBudget(2 * settings.max_body_bytes)
    observer = runtime.observer  # not telemetry in a runtime built by hand, as in tests
    telemetry = observer if isinstance(observer, Telemetry) else Telemetry()
    runtime.observer = telemetry
    telemetry.watch(runtime, backbone=settings.backbone)
    app.state.telemetry = telemetry
    app.state.usecases = cases = UseCases(runtime, telemetry)
    series = TimeSeries(settings.dashboard_points)
    # A durable daemon keeps the dashboard's history in its data dir too.
    kept = settings.data_dir / HISTORY_FILE if runtime.wal is not None else None
    interval = settings.dashboard_interval_s
    app.state.sampler = sampler = Sampler(runtime, telemetry, series, interval, path=kept)
    app.state.mqtt = None
    if settings.mqtt.host is not None:
        from service.mqtt import MqttBridge

        app.state.mqtt = MqttBridge(settings, cases, observer=telemetry)
    app.state.fleet = None
    if settings.fleet.enabled:
        try:
            from service.fleet.client import FleetClient
        except ImportError as exc:
            raise ValueError(
                f"fleet_enabled needs Flower: pip install 'edgecl[fleet]' ({exc})"
            ) from None

        app.state.fleet = FleetClient(runtime, settings.fleet, settings.data_dir)
        runtime.fleet_report = app.state.fleet.report
    for module in (learn, predict, retrain, health, stats, metrics, dashboard, docs, root):
        app.include_router(module.router)
    _install_handlers(app)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(RequestMetrics, telemetry=telemetry)
    app.add_middleware(root.TrailingSlash)  # outermost: every layer sees the bare path

    def openapi() -> dict[str, Any]:
        return _openapi(app, runtime.learner.latent_shape)

    app.openapi = openapi  # type: ignore[method-assign]
    return app
