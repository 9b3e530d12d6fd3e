"""Restoring the writer's state: the newest checkpoint, then the WAL records after it.

A damaged checkpoint is skipped only if the WAL still holds what it held (see
:meth:`service.checkpoints.Checkpoints.load_latest`); replay learns the records
micro-batch by micro-batch, as the writer first learned them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from edgecl.learner import Learner
from service.errors import StorageUnavailableError
from service.records import record_inputs
from service.sample_ids import RecentIds
from service.writer import Writer

log = logging.getLogger("edgecl.runtime")


@dataclass(frozen=True)
class Reembedded:
    """What :func:`reembed` did: WAL samples replayed, and those left out because their
    record kept no raw input."""

    replayed: int
    skipped: int


def reembed(writer: Writer) -> Reembedded:
    """Restore with the raw inputs embedded through the current backbone, then checkpoint;
    ``StorageUnavailableError`` when that checkpoint cannot be written."""
    restore(writer, reembed=True)
    if writer.checkpointer is not None:
        writer.checkpointer.changed_outside_wal()  # a new head: the WAL cannot make it
    if not writer.maybe_checkpoint(force=True):
        raise StorageUnavailableError("the new checkpoint could not be written")
    return Reembedded(writer.counters["replayed"], writer.reembed_skipped)


def restore(writer: Writer, reembed: bool = False) -> None:
    """Load the newest checkpoint, then replay the WAL records after it.

    ``reembed``: the model was learned on another backbone; the raw inputs its store
    and WAL keep are embedded through the current one and a new head learns them
    (see :func:`edgecl.reembed.reembed`); records without raw inputs are skipped.
    """
    loaded = None
    if writer.checkpoints is not None:
        # A damaged checkpoint may be skipped only if the WAL still holds what it held.
        covered = writer.wal.covers if writer.wal is not None else _nothing_needed
        loaded = writer.checkpoints.load_latest(covered)
        if loaded is not None:
            state, seq = loaded
            _load(writer, state, reembed)
            writer.applied_seq = seq
            log.info("restored checkpoint at WAL seq %d", seq)
    if writer.wal is None:
        return
    advance = getattr(writer.wal, "advance_to", None)
    if advance is not None:
        advance(writer.applied_seq)  # seqs never go backwards, even if the WAL was lost
    batch: list[dict[str, Any]] = []
    for seq, record in writer.wal.replay(writer.applied_seq):
        if record.get("part", 0) == 0:  # a new micro-batch (or a record without parts)
            _replay(writer, batch)
        if record.get("kind") == "learn":
            if reembed:
                record = _reembedded(writer, record)
            if record:
                batch.append(record)
        writer.applied_seq = seq
    _replay(writer, batch)
    if writer.checkpointer is not None:  # the replayed records are in no checkpoint yet
        writer.checkpointer.wal_tail += writer.wal.replayed_bytes
    if writer.counters["replayed"]:
        log.info("replayed %d samples from the WAL", writer.counters["replayed"])
    writer.published = writer.learner.open_head()
    if writer.checkpointer is not None and loaded is None and writer.applied_seq == 0:
        # A new data dir: record the backbone it belongs to before any sample arrives,
        # so a WAL replayed later on another backbone is refused, not mislearned.
        writer.checkpointer.changed_outside_wal()
        writer.maybe_checkpoint(force=True)


def _replay(writer: Writer, batch: list[dict[str, Any]]) -> None:
    """Learn one replayed micro-batch (and empty ``batch``)."""
    if not batch:
        return
    try:
        writer._apply(batch, writer.applied_seq)
    except ValueError as exc:
        log.error(
            "skipping WAL records up to %d that cannot be learned: %s", writer.applied_seq, exc
        )
    writer.counters["replayed"] += sum(len(r.get("labels", ())) for r in batch)
    batch.clear()


def _reembedded(writer: Writer, record: dict[str, Any]) -> dict[str, Any]:
    """The record with latents from the current backbone ({} without raw inputs)."""
    inputs = record_inputs([record], [list(range(len(record["labels"])))])
    if inputs is None:
        writer.reembed_skipped += len(record["labels"])
        return {}
    return {**record, "z": writer.learner.embed(inputs)}


def _load(writer: Writer, state: dict[str, Any], reembed: bool = False) -> None:
    saved = state["learner"]
    current = writer.learner
    want = (current.strategy.name, None if current.store is None else current.store.name)
    store = saved["store"]
    got = (saved["strategy"]["name"], None if store is None else store["name"])
    if want[0] == got[0] and want[1] != got[1] and writer.keep_saved_store:
        # The settings did not name a store: the model keeps the one it was learned with.
        log.info("the data dir's model keeps its replay store %r", got[1])
        want = got
    if want != got:
        raise ValueError(
            f"the data dir holds a model with strategy {got[0]!r} and store {got[1]!r}, "
            f"but the settings ask for {want[0]!r} and {want[1]!r}; use another data dir "
            "or change the settings"
        )
    if reembed:
        from edgecl.reembed import reembed as reembed_state

        # The probe's held latents are the old backbone's: it starts collecting again.
        writer.learner = reembed_state(saved, current.backbone)
        writer.learner.probe = current.probe
        state = {**state, "probe": None}
    else:
        writer.learner = Learner.from_state(saved, current.backbone, current.probe)
    # The calibration's options are settings: they win over what the checkpoint held.
    mine = current.calibration
    writer.learner.calibration = replace(
        writer.learner.calibration, acceptance=mine.acceptance, override=mine.override
    )
    writer.recent = RecentIds(writer.recent.capacity, state.get("recent_ids", []))
    probe = writer.learner.probe
    if probe is not None and state.get("probe") is not None:
        probe.load_state_dict(state["probe"])


def _nothing_needed(first: int, last: int) -> bool:
    return first > last
