"""GET /dashboard: the built-in page, its static files, and /dashboard/data behind it.

The page and its files hold no data, so they are served without the token; the page sends
the token (from ``#token=...`` in its address, or typed in) when it fetches the data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from service.observability.stats import Stats
from service.routes import ApiError, errors, require_token, runtime, settings
from service.routes.stats import snapshot

router = APIRouter(tags=["monitoring"])

STATIC = Path(__file__).resolve().parent.parent / "dashboard"
#: Every file the page may ask for, with its media type (nothing else is served).
FILES = {
    "index.html": "text/html; charset=utf-8",
    "format.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "vendor/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uPlot.min.css": "text/css; charset=utf-8",
    "vendor/uPlot.LICENSE": "text/plain; charset=utf-8",
}
_NO_CACHE = {"Cache-Control": "no-cache"}


class Series(BaseModel):
    t: list[float] = Field(description="UNIX time of each point")
    values: dict[str, list[float | None]] = Field(description="figure name -> one per point")
    classes: dict[str, list[float | None]] = Field(
        description="test-then-train accuracy of the classes with most samples, per point"
    )


class DashboardData(BaseModel):
    time: float
    interval_s: float
    capacity: int
    series: Series
    stats: Stats
    settings: dict[str, Any]


def _file(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type=FILES[name], headers=_NO_CACHE)


# The page and its files are not API: left out of the schema (they need no token).
@router.get("/dashboard", response_class=FileResponse, include_in_schema=False)
async def page() -> FileResponse:
    return _file("index.html")


def _settings_view(request: Request) -> dict[str, Any]:
    """What the page shows under "strategy and settings" (never the token)."""
    s, rt = settings(request), runtime(request)
    store = rt.learner.store  # the settings may say "paper": show what it became
    return {
        "strategy": s.strategy.name,
        "strategy_options": rt.learner.strategy.options(),
        "store": None if store is None else store.name,
        "store_encoding": None if store is None else store.options().get("encoding"),
        "store_max_bytes": None if store is None else store.max_bytes,
        "backbone": s.backbone if s.backbone == "identity" else f"{s.backbone} ({s.backbone_cut})",
        "latent_shape": list(rt.learner.latent_shape),
        "prequential_window": s.prequential_window,
        "probe_share": s.probe.share,
        "probe_every": s.probe.every,
        "probe_max_bytes": s.probe.max_bytes,
        "queue_size": s.queue.size,
        "max_batch": s.queue.max_batch,
        "wal_fsync": s.durability.wal_fsync,
        "checkpoint_wal_ratio": s.durability.checkpoint_wal_ratio,
        "mqtt": s.mqtt.host or "off",
    }


@router.get(
    "/dashboard/data",
    response_model=DashboardData,
    summary="Time series, current stats and settings, for the dashboard",
    responses=errors(401),
    dependencies=[Depends(require_token)],
)
async def data(request: Request) -> JSONResponse:
    sampler = request.app.state.sampler
    body = {
        "time": time.time(),
        "interval_s": sampler.interval_s,
        "capacity": sampler.series.capacity,
        "series": sampler.series.columns(),
        "stats": (await snapshot(request)).body(),
        "settings": _settings_view(request),
    }
    return JSONResponse(body)


@router.get(
    "/dashboard/{name:path}",
    response_class=FileResponse,
    summary="A static file of the dashboard",
    responses={404: {"description": "No such file."}},
    include_in_schema=False,
)
async def static(name: str) -> FileResponse:
    if name not in FILES:
        raise ApiError(404, f"no dashboard file {name!r}")
    return _file(name)
