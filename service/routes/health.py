"""Liveness and readiness probes (never behind the token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.routes import ERRORS, runtime, settings
from service.schemas import Health, Ready

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Health, summary="The process answers")
async def live() -> Health:
    return Health(status="live")


@router.get(
    "/ready",
    response_model=Ready,
    summary="Backbone loaded, state restored (and the MQTT broker, when required)",
    responses={503: ERRORS[503]},
)
async def ready(request: Request) -> JSONResponse:
    if not runtime(request).ready:
        return JSONResponse({"detail": "the service is starting or stopping"}, 503)
    mqtt = getattr(request.app.state, "mqtt", None)
    if mqtt is not None and settings(request).mqtt.required and not mqtt.connected:
        return JSONResponse({"detail": "not connected to the MQTT broker (mqtt_required)"}, 503)
    body: dict[str, Any] = {"status": "ready"}
    check = getattr(runtime(request).learner.backbone, "check", None)
    if check is not None:  # the int8 backbone's start-up self-check
        body["backbone_check"] = check
    return JSONResponse(body)
