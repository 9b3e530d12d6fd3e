"""A device's side of a round: what it sends, and how it takes the merge in.

A round reads a snapshot of the head (under the learner's lock, :func:`snapshot`), sends
what this device learned itself (:func:`contribution`), and later applies the merged head
as one head swap (:func:`apply_merged`, under the lock again). Learning goes on between
the two; nothing learned meanwhile is lost:

- ``slda``/``ncm``: the new head is ``merged + (now − snapshot)`` in sufficient statistics:
  the samples learned since the snapshot are added to the merge exactly.
- SGD heads: the new weights are ``merged + (now − snapshot)`` per class row (the local
  drift since the snapshot is kept on top of the average).

For statistics a device remembers which part of its head came from elsewhere
(:class:`FleetMemory`, saved with the head in the same checkpoint), so what it sends is
always its own learning only, in total: the server replaces the device's previous entry,
so a device that crashed mid-round and sends again is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecl.fleet.contribution import Contribution, align, from_arrays, to_arrays
from edgecl.fleet.statistics import (
    check_compatible,
    combine,
    from_head,
    statistics_state,
    weights_back,
    weights_view,
)
from edgecl.learner import Learner
from edgecl.types import Label, State


@dataclass(frozen=True)
class HeadSnapshot:
    """The head as a round read it."""

    strategy: str
    state: State
    labels: list[Label]
    own: list[int]  # samples this device learned per class
    version: int


@dataclass
class FleetMemory:
    """What a device keeps with its head: the statistics that came from elsewhere, the
    last round applied, which classes other devices taught, the model version that round
    left and a digest of its merge (a round that changes neither is skipped)."""

    foreign: Contribution | None = None
    round: int = 0
    from_elsewhere: list[Label] = field(default_factory=list)
    version: int = -1
    digest: str = ""

    def state_dict(self) -> State:
        header, arrays = (None, []) if self.foreign is None else to_arrays(self.foreign)
        return {
            "foreign": None if header is None else {"header": header, "arrays": arrays},
            "round": self.round,
            "from_elsewhere": list(self.from_elsewhere),
            "version": self.version,
            "digest": self.digest,
        }

    def holds(self, snap: HeadSnapshot) -> bool:
        """Whether the head in ``snap`` is the merge this memory was left by, with nothing
        of this device's own learning that the fleet has not been sent (a version of -1
        matches no head: model versions start at 0)."""
        return snap.version == self.version

    @classmethod
    def from_state(cls, state: State | None) -> FleetMemory:
        if not state:
            return cls()
        f = state.get("foreign")
        foreign = (
            None if f is None else from_arrays(f["header"], [np.asarray(a) for a in f["arrays"]])
        )
        return cls(
            foreign,
            int(state.get("round", 0)),
            list(state.get("from_elsewhere", [])),
            int(state.get("version", -1)),
            str(state.get("digest", "")),
        )


def snapshot(learner: Learner) -> HeadSnapshot:
    """The head as it is now (hold the learner's lock while calling)."""
    return HeadSnapshot(
        learner.strategy.name,
        learner.strategy.state_dict(),
        learner.labels.labels,
        list(learner.class_counts),
        learner.model_version,
    )


def _as_contribution(snap: HeadSnapshot) -> Contribution:
    return from_head(snap.strategy, snap.state, snap.labels, snap.own)


def contribution(snap: HeadSnapshot, memory: FleetMemory) -> Contribution:
    """What this device learned itself, in total: its head less what came from elsewhere
    (statistics), or its weight rows of the classes it learned samples of (SGD heads)."""
    head = _as_contribution(snap)
    if head.kind == "statistics" and memory.foreign is not None:
        head = combine(head, memory.foreign, sign=-1.0)
    return _only_taught(head)


def _only_taught(c: Contribution) -> Contribution:
    keep = np.flatnonzero(c.counts > 0)
    arrays = {k: (v[keep] if k in ("sums", "w", "b") else v) for k, v in c.arrays.items()}
    labels = [c.labels[i] for i in keep.tolist()]
    return Contribution(c.kind, c.strategy, labels, c.counts[keep], arrays, dict(c.scalars))


def apply_merged(
    learner: Learner, merged: Contribution, snap: HeadSnapshot, sent: Contribution,
    memory: FleetMemory, round_: int,
) -> FleetMemory:  # fmt: skip
    """Swap in ``merged`` plus what was learned since ``snap`` (hold the learner's lock);
    ``sent`` is what this device contributed from ``snap``. Classes only other devices
    taught become classes of this learner. Returns the memory to keep with the new head."""
    now = _as_contribution(snapshot(learner))
    drifted = learner.model_version != snap.version
    check_compatible(now, merged)  # a merge that does not fit changes nothing
    known = set(map(_key, learner.labels.labels))
    added = [label for label in merged.labels if _key(label) not in known]
    labels = learner.labels.labels + added
    if merged.kind == "statistics":
        drift = combine(now, _as_contribution(snap), sign=-1.0)
        state = statistics_state(combine(merged, drift), labels)
        foreign = combine(merged, sent, sign=-1.0)
    else:
        state, foreign = _weights_state(learner.strategy.state_dict(), merged, snap, labels), None
    for label in added:
        learner.labels.encode(label)
        learner.class_counts.append(0)
    learner.swap_head(state)
    own = {_key(label) for label, n in zip(labels, learner.class_counts, strict=True) if n > 0}
    elsewhere = [label for label in merged.labels if _key(label) not in own]
    # Samples learned since the snapshot are in the head but not in the fleet's merge: keep
    # no version, so the next round sends them rather than skipping this device.
    version = -1 if drifted else learner.model_version
    return FleetMemory(foreign, round_, elsewhere, version)


def _weights_state(
    state: State, merged: Contribution, snap: HeadSnapshot, labels: list[Label]
) -> State:
    k, original, state = len(labels), state, weights_view(state)
    w_now, b_now = np.asarray(state["w"]), np.asarray(state["b"])
    counts_now = np.zeros(k, np.int64)
    counts_now[: len(state["counts"])] = state["counts"]
    dim = max(merged.dim, w_now.shape[1] if w_now.ndim == 2 else 0)
    w, b = np.zeros((k, dim), np.float32), np.zeros(k, np.float32)
    w[: len(w_now), : w_now.shape[1]], b[: len(b_now)] = w_now, b_now
    at = weights_view(snap.state)
    w_snap, b_snap = np.asarray(at["w"]), np.asarray(at["b"])
    at_snap = len(snap.labels)
    for j, i in enumerate(align(merged.labels, labels).tolist()):
        if i < at_snap:  # known then: the average, plus what this device drifted since
            w[i] = merged.arrays["w"][j] + (w[i] - w_snap[i])
            b[i] = merged.arrays["b"][j] + (b[i] - b_snap[i])
        elif counts_now[i] == 0:  # new here since the snapshot and not trained here
            w[i], b[i] = merged.arrays["w"][j], merged.arrays["b"][j]
        counts_now[i] = max(counts_now[i], int(merged.counts[j]))
    out = weights_back(original, w, b, counts_now)
    layers = dict(state.get("layers", {}))
    for name in list(layers):
        avg = merged.arrays.get(f"layer:{name}")
        if avg is not None and avg.shape == np.shape(layers[name]):
            drift = np.asarray(layers[name]) - np.asarray(snap.state["layers"][name])
            layers[name] = (avg + drift).astype(np.float32)
    if layers:
        out["layers"] = layers
    return out


def _key(label: Label) -> tuple[type, Any]:
    return (type(label), label)
