"""GET /stats: what the learner knows and how well it does (test-then-train)."""

from __future__ import annotations

from typing import Any

import psutil
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.routes import errors, require_token, runtime
from service.schemas import BackboneCheck

router = APIRouter(tags=["monitoring"], dependencies=[Depends(require_token)])


class ClassStats(BaseModel):
    samples: int
    accuracy: float = Field(description="test-then-train accuracy on this class")


class StoreStats(BaseModel):
    kind: str | None
    items: int
    bytes: int
    max_bytes: int


class PrequentialStats(BaseModel):
    seen: int
    accuracy: float
    window_accuracy: float
    window: int


class Confusion(BaseModel):
    true: str
    predicted: str
    count: int


class ProbeClassStats(BaseModel):
    held: int
    accuracy: float | None
    best: float | None
    forgetting: float | None = Field(description="best accuracy so far minus now")


class ProbeStats(BaseModel):
    share: float
    every: int
    held: int = Field(description="samples held in the probe now (acknowledged, not learned)")
    diverted: int = Field(description="samples ever held back, evicted ones included")
    bytes: int
    max_bytes: int
    evaluated_at: int | None = Field(description="samples_learned at the last re-score")
    accuracy: float | None = Field(description="probe accuracy over all classes")
    forgetting: float | None = Field(description="mean per-class forgetting")
    max_forgetting: float | None
    classes: dict[str, ProbeClassStats]


class DurabilityStats(BaseModel):
    wal_bytes: int = Field(description="bytes appended to the WAL since the daemon started")
    checkpoint_bytes: int = Field(description="checkpoint bytes written since it started")
    last_checkpoint_s: float | None = Field(
        description="the writer's pause for the last checkpoint: state, write, fsync, rename"
    )
    last_checkpoint_bytes: int | None = Field(description="size of the last checkpoint file")


class QueueStats(BaseModel):
    depth: int
    capacity: int


class Stats(BaseModel):
    samples_learned: int
    model_version: int
    uptime_s: float
    rss_bytes: int
    classes: dict[str, ClassStats]
    store: StoreStats
    prequential: PrequentialStats
    strategy: dict[str, Any] = Field(description="name and options of the head strategy")
    queue: QueueStats
    events: dict[str, int] = Field(description="queue_full, duplicates, storage_errors, ...")
    bytes_written_per_sample: float | None = Field(
        default=None,
        description="flash wear: WAL and checkpoint bytes written per sample learned since "
        "the daemon started (only with a WAL)",
    )
    durability: DurabilityStats | None = Field(
        default=None, description="bytes written and checkpoint cost (null: no WAL)"
    )
    confusions: list[Confusion] = Field(
        default_factory=list, description="the most frequent test-then-train mistakes"
    )
    probe: ProbeStats | None = Field(
        default=None, description="held-back samples re-scored over all classes (null: off)"
    )
    backbone_check: BackboneCheck | None = Field(
        default=None, description="the int8 backbone's start-up self-check (null: none ran)"
    )


@router.get("/stats", response_model=Stats, responses=errors(401))
async def stats(request: Request) -> JSONResponse:
    return JSONResponse(await snapshot(request))


async def snapshot(request: Request) -> dict[str, Any]:
    """The /stats body as plain data (the dashboard shows the same)."""
    # stats() waits for the learner's lock: keep that wait off the event loop.
    out = await run_in_threadpool(runtime(request).stats)
    out["rss_bytes"] = psutil.Process().memory_info().rss
    data = Stats.model_validate(out).model_dump(mode="json")
    if data["bytes_written_per_sample"] is None:
        del data["bytes_written_per_sample"]  # no WAL: nothing is written per sample
    return data
