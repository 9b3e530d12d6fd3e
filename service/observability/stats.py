"""The typed figures of one stats snapshot: the ``/stats`` body, and what metrics, the
dashboard and the MQTT ``model`` topic read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, Field

from service.schemas import BackboneCheck


class ClassStats(BaseModel):
    samples: int
    accuracy: float = Field(description="test-then-train accuracy on this class")


class StoreStats(BaseModel):
    kind: str | None
    items: int
    bytes: int
    max_bytes: int
    strategy_bytes: int | None = Field(
        default=None,
        description="bytes the strategy keeps in place of (or besides) a store: iCaRL's "
        "exemplars, generative replay's class Gaussians (null: it keeps none)",
    )
    # For the metrics only: /stats never showed it, so it stays out of the body.
    evictions: int | None = Field(default=None, exclude=True)


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
    status: str = Field(description="ok, or too_few (it cannot measure yet: see reason)")
    reason: str | None = Field(default=None, description="why the probe cannot measure yet")
    min_items: int | None = Field(
        default=None, description="held items (of two classes or more) it needs to measure"
    )
    share: float
    every: int
    held: int = Field(description="samples held in the probe now (acknowledged, not learned)")
    diverted: int = Field(description="samples ever held back, evicted ones included")
    bytes: int
    max_bytes: int
    evaluated_at: int | None = Field(description="samples_learned at the last re-score")
    age_s: float | None = Field(
        default=None, description="seconds since the last re-score (null: none yet)"
    )
    accuracy: float | None = Field(description="probe accuracy over all classes")
    margin: float | None = Field(
        default=None,
        description="half-width of a 95% interval around accuracy: the held items are a "
        "sample of the stream, so a small probe measures coarsely",
    )
    forgetting: float | None = Field(description="mean per-class forgetting")
    max_forgetting: float | None
    classes: dict[str, ProbeClassStats]


class CalibrationStats(BaseModel):
    temperature: float = Field(description="divides the head's logits; fitted on the probe")
    threshold: float | None = Field(description="novelty threshold fitted on the probe")
    override: float | None = Field(description="novelty_threshold from the settings")
    in_use: float | None = Field(description="the threshold predictions use (null: none)")
    acceptance: float = Field(description="share of held-back known samples it accepts")
    samples: int = Field(description="held-back items of the last fit")
    classes: int
    fitted_at: int | None = Field(description="samples_learned at the last fit")
    model_version: int | None
    nll: list[float] | None = Field(description="held-back NLL before and after the fit")
    ece: list[float] | None = Field(description="held-back calibration error before and after")
    status: str = Field(description="fitted, unfitted, too_few or no_probe")
    reason: str


class DurabilityStats(BaseModel):
    wal_bytes: int = Field(description="bytes appended to the WAL since the daemon started")
    checkpoint_bytes: int = Field(description="checkpoint bytes written since it started")
    last_checkpoint_s: float | None = Field(
        description="the writer's pause for the last checkpoint: state, write, fsync, rename"
    )
    last_checkpoint_bytes: int | None = Field(description="size of the last checkpoint file")
    wal_bytes_since_checkpoint: int | None = Field(
        default=None,
        description="WAL bytes no checkpoint holds yet (a restart replays them); a checkpoint "
        "is taken once they reach the last checkpoint's size (checkpoint_wal_ratio)",
    )
    bytes_per_sample_last_hour: float | None = Field(
        default=None,
        description="flash wear: WAL and checkpoint bytes written per sample learned in the "
        "last hour (null: none learned in it); bytes_written_per_sample is since the start",
    )


class TaskStats(BaseModel):
    name: str
    samples: int = Field(description="samples learned with this task")
    classes: list[str] = Field(description="the labels this task was taught")
    bytes: int | None = Field(
        description="bytes the head holds for this task (masks, heads, embeddings; null: "
        "the strategy does not learn per task)"
    )


class TasksStats(BaseModel):
    mode: str | None = Field(
        description="required (a sample needs a task), inferred (predictions infer a missing "
        "one), or null: the strategy ignores tasks (they are only counted)"
    )
    tasks: list[TaskStats]


class QueueStats(BaseModel):
    depth: int
    capacity: int


# No docstring on the models: FastAPI would publish it in the schema as their description.
class Stats(BaseModel):
    samples_learned: int
    model_version: int
    uptime_s: float
    rss_bytes: int
    classes: dict[str, ClassStats]
    store: StoreStats
    prequential: PrequentialStats = Field(
        description="test-then-train: each sample scored just before it is learned (it "
        "cannot see forgetting; the probe can). A sample of a class the head has not learned "
        "yet counts as a miss: each new class's first sample, and any others of it in the "
        "same micro-batch"
    )
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
    calibration: CalibrationStats | None = Field(
        default=None,
        description="how scores are calibrated and unknown inputs told apart (see novelty)",
    )
    backbone_check: BackboneCheck | None = Field(
        default=None, description="the int8 backbone's start-up self-check (null: none ran)"
    )
    fleet: dict[str, Any] | None = Field(
        default=None, description="the fleet's last round on this device (null: no fleet)"
    )
    tasks: TasksStats | None = Field(
        default=None, description="the tasks samples came with (null: none came with one)"
    )

    def body(self) -> dict[str, Any]:
        """The ``/stats`` JSON body: ``bytes_written_per_sample`` is left out when null.

        >>> s = Stats(
        ...     samples_learned=0, model_version=0, uptime_s=1.0, rss_bytes=1 << 20, classes={},
        ...     store=StoreStats(kind=None, items=0, bytes=0, max_bytes=0),
        ...     prequential=PrequentialStats(seen=0, accuracy=0.0, window_accuracy=0.0, window=9),
        ...     strategy={"name": "ncm"}, queue=QueueStats(depth=0, capacity=8), events={},
        ... )
        >>> body = s.body()
        >>> body["store"]["bytes"], "bytes_written_per_sample" in body, body["probe"]
        (0, False, None)
        """
        data = self.model_dump(mode="json")
        if data["bytes_written_per_sample"] is None:
            del data["bytes_written_per_sample"]  # no WAL: nothing is written per sample
        return data


class StatsSource(Protocol):
    """Where the figures come from (the runtime): one snapshot per call."""

    def stats(self) -> Stats: ...


def top_classes(classes: Mapping[str, ClassStats], limit: int) -> list[str]:
    """The ``limit`` labels with the most learned samples (ties: first seen first).

    >>> counts = {"a": 1, "b": 5, "c": 5}
    >>> top_classes({k: ClassStats(samples=n, accuracy=0.0) for k, n in counts.items()}, 2)
    ['b', 'c']
    """
    ranked = sorted(enumerate(classes.items()), key=lambda kv: (-kv[1][1].samples, kv[0]))
    return [label for _, (label, _) in ranked[:limit]]
