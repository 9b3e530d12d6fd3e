"""Probe set: held-back labelled samples, never learned, re-scored to make forgetting visible.

Prequential (test-then-train) accuracy scores each sample once, just before it is learned.
On a class-incremental stream the samples of the moment all come from the newest classes,
so a learner that keeps only those still scores high while it has forgotten everything
older. A probe set holds back a small, class-balanced share of the labelled samples and
re-scores all of them, over all classes, every few learned samples: per class accuracy now,
the best it ever was, and the difference, forgetting.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edgecl.labels import LabelMap
from edgecl.replay.base import rng_state, set_rng_state
from edgecl.replay.class_balanced import ClassBalancedStore
from edgecl.replay.compress import item_nbytes
from edgecl.task_book import pack, unpack
from edgecl.types import FloatArray, Label, State

BoolArray = npt.NDArray[np.bool_]

_ENCODINGS = ("int8", "float16", "float32")


class Scored(Protocol):
    """What the probe reads of the learner that owns it (:class:`edgecl.Learner`)."""

    labels: LabelMap
    class_counts: list[int]
    samples_learned: int

    def predict_proba_latents(self, z: Any, tasks: Any = None) -> FloatArray: ...


class ProbeSet:
    """A class-balanced, byte-bounded share of labelled latents held back from learning.

    A :class:`edgecl.Learner` given a probe passes each batch through it: about ``share``
    of the samples are held back, but never a class's first ``warmup`` samples (those
    before it in the same batch count), so every held class is one the head has learned;
    by default only the first, so that a small session of a few samples per class is
    measured too. The rest are learned, and after every ``every`` learned samples the
    held items are re-scored over all classes. Until it holds
    ``min_items`` items of two classes, :meth:`report` says it cannot measure, and why.
    A sample is held only if the class-balanced store keeps it (GDumb's rule: while there
    is room, or while its class holds less than its share), so nothing is dropped unseen;
    when a new class needs room, items of the largest class are evicted.

    ``diverted`` counts samples held back since the model began (evicted ones included):
    they were acknowledged to the sender but never learned.

    >>> from edgecl import Learner, strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> probe = ProbeSet(share=0.5, every=4, warmup=1, seed=0)
    >>> learner = Learner(IdentityBackbone(2), strategies.create("ncm"), probe=probe)
    >>> z = np.array([[1, 0], [0, 1]] * 10, np.float32)
    >>> learner.learn_batch(learner.check_batch(z[:2], ["a", "b"]))  # new classes: learned
    2
    >>> learner.learn_batch(learner.check_batch(z, ["a", "b"] * 10)) + probe.held
    20
    >>> report = probe.report(learner.labels.labels)
    >>> report["accuracy"], report["classes"]["a"]["forgetting"]
    (1.0, 0.0)
    """

    def __init__(
        self,
        share: float = 0.05,
        max_bytes: int = 512 << 10,
        every: int = 500,
        encoding: str = "int8",
        warmup: int = 1,
        seed: int = 0,
        min_items: int = 20,
    ) -> None:
        if not 0.0 <= share < 1.0:
            raise ValueError(f"share must be in [0, 1), got {share!r}")
        if every < 1 or warmup < 1:
            raise ValueError(f"every and warmup must be >= 1, got {every!r} and {warmup!r}")
        if encoding not in _ENCODINGS:
            raise ValueError(f"encoding must be one of {list(_ENCODINGS)}, got {encoding!r}")
        self.share, self.every, self.warmup = float(share), int(every), int(warmup)
        self.min_items = int(min_items)
        self.store = ClassBalancedStore(max_bytes, encoding, seed)
        self._rng = np.random.default_rng(seed)
        self.diverted = 0
        self.since = 0  # samples learned since the last re-score
        self.evaluated_at: int | None = None  # learner.samples_learned at the last re-score
        self.rescored_at: float | None = None  # time.monotonic() of the last re-score
        self.accuracy: float | None = None
        self.last: dict[int, float] = {}  # class index -> accuracy at the last re-score
        self.best: dict[int, float] = {}  # class index -> best accuracy so far

    @property
    def held(self) -> int:
        return len(self.store)

    # -- holding back -----------------------------------------------------------------
    def _keeps(self, y: int, shape: tuple[int, ...]) -> bool:
        """Whether the class-balanced store would keep one more item of class ``y``."""
        store = self.store
        size = item_nbytes(store.encoding, shape)
        if store.nbytes + size <= store.max_bytes:
            return size <= store.max_bytes
        counts = store.class_counts
        classes = len(counts) + (y not in counts)
        return counts.get(y, 0) * classes < len(store)

    def divert(
        self,
        learner: Scored,
        z: FloatArray,
        labels: Sequence[Label],
        tasks: npt.NDArray[np.int64] | None = None,
    ) -> BoolArray:
        """Hold back some samples (each with its task, ``-1``: none); returns the mask of
        those left to learn. Items are balanced per (class, task) pair."""
        keep = np.ones(len(labels), dtype=bool)
        if self.share == 0.0:
            return keep
        # One draw per sample, whatever happens to it: a WAL replay repeats the split.
        draws = self._rng.random(len(labels))
        shape = tuple(z.shape[1:])
        # Class indices as the learner will give them, and samples learned per class,
        # counting this batch's earlier ones: a batch that brings a new class may hold
        # back some of it (all but its first ``warmup`` samples are eligible).
        names, learned = LabelMap(learner.labels.labels), list(learner.class_counts)
        for i, label in enumerate(labels):
            y = names.encode(label)
            learned.extend([0] * (y + 1 - len(learned)))
            key = y if tasks is None else int(pack(np.array([y]), tasks[i : i + 1])[0])
            if draws[i] < self.share and learned[y] >= self.warmup and self._keeps(key, shape):
                self.store.add(z[i], key)
                keep[i] = False
                self.diverted += 1
            else:
                learned[y] += 1
        return keep

    def learned(self, learner: Scored, n: int) -> bool:
        """The learner learned ``n`` samples (those :meth:`divert` left); re-score when
        due. Returns whether it re-scored."""
        self.since += n
        if n and self.since >= self.every:
            self.rescore(learner)
            return True
        return False

    # -- scoring ----------------------------------------------------------------------
    def rescore(self, learner: Scored) -> None:
        """Score every held item with the current head, over all classes."""
        self.since = 0
        self.evaluated_at = learner.samples_learned
        self.rescored_at = time.monotonic()
        scored = self.score(learner)
        if scored is None:
            return
        self.accuracy, self.last = scored
        for c, acc in self.last.items():
            self.best[c] = max(self.best.get(c, acc), acc)

    def score(self, learner: Scored) -> tuple[float, dict[int, float]] | None:
        """Accuracy over the held items and per class with the head as it is now, changing
        nothing (None: nothing held or no class known)."""
        if not len(self.store) or not len(learner.labels):
            return None
        z, y, t = self.labelled()
        right = np.argmax(learner.predict_proba_latents(z, t), axis=1) == y
        return float(right.mean()), {c: float(right[y == c].mean()) for c in np.unique(y).tolist()}

    def labelled(self) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Every held item, its class index and its task (``-1``: none)."""
        z, keys = self.store.items()
        y, t = unpack(keys)
        return z, y, t

    @property
    def class_counts(self) -> dict[int, int]:
        """Held items per class index (over all tasks)."""
        counts: dict[int, int] = {}
        for key, k in self.store.class_counts.items():
            c = int(unpack(np.array([key]))[0][0])
            counts[c] = counts.get(c, 0) + k
        return counts

    def report(
        self, labels: Sequence[Label], fresh: tuple[int, float, dict[int, float]] | None = None
    ) -> dict[str, Any]:
        """Plain-data figures; ``labels`` are the learner's labels in index order.

        ``fresh``: ``(samples_learned, accuracy, per class)`` of a :meth:`score` taken after
        the last re-score, shown instead of it (the best so far still counts it), so a
        reader sees the head as it is without a re-score changing the probe's state."""
        if fresh is not None:
            at, accuracy, last = fresh
            best = {c: max(self.best.get(c, a), a) for c, a in last.items()}
            return self._report(labels, at, accuracy, last, {**self.best, **best})
        return self._report(labels, self.evaluated_at, self.accuracy, self.last, self.best)

    def _report(
        self,
        labels: Sequence[Label],
        at: int | None,
        accuracy: float | None,
        last: dict[int, float],
        best: dict[int, float],
    ) -> dict[str, Any]:
        counts = self.class_counts
        classes = {}
        held = {c for c, k in counts.items() if k}  # the store remembers emptied classes
        drop = {c: best[c] - acc for c, acc in last.items()}
        for c in sorted(held | set(last)):
            classes[str(labels[c])] = {
                "held": counts.get(c, 0),
                "accuracy": last.get(c),
                "best": best.get(c),
                "forgetting": drop.get(c),
            }
        drops = list(drop.values())
        status, reason = self.status(len(held))
        return {
            "status": status,
            "reason": reason,
            "share": self.share,
            "every": self.every,
            "held": len(self.store),
            "diverted": self.diverted,
            "bytes": self.store.nbytes,
            "max_bytes": self.store.max_bytes,
            "evaluated_at": at,
            "accuracy": accuracy,
            "forgetting": float(np.mean(drops)) if drops else None,
            "max_forgetting": max(drops) if drops else None,
            "classes": classes,
        }

    def status(self, classes: int) -> tuple[str, str]:
        """``("ok", ...)`` when the held items suffice to measure, else ``("too_few", why)``."""
        held = f"holds {len(self.store)} items of {classes} classes"
        if self.share == 0.0:
            return "off", "the share held back is 0: nothing is measured"
        if len(self.store) < self.min_items or classes < 2:
            why = f"{held}; needs at least {self.min_items} items of 2 classes"
            return "too_few", why + f" (about {self.share:.0%} of each class's samples is held)"
        return "ok", held

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> State:
        return {
            "options": self.store.options(),
            "store": self.store.state_dict(),
            "rng": rng_state(self._rng),
            "diverted": self.diverted,
            "since": self.since,
            "evaluated_at": self.evaluated_at,
            "accuracy": self.accuracy,
            "last": [[c, v] for c, v in self.last.items()],
            "best": [[c, v] for c, v in self.best.items()],
        }

    def load_state_dict(self, state: State) -> None:
        """Load saved state; held items saved under another budget or encoding are dropped
        (the figures and counts are kept), since they may not fit this one."""
        saved = state["options"]
        same = (saved["max_bytes"], saved["encoding"]) == (
            self.store.max_bytes,
            self.store.encoding,
        )
        if same:
            self.store.load_state_dict(state["store"])
        set_rng_state(self._rng, state["rng"])
        self.diverted = int(state["diverted"])
        self.since = int(state["since"])
        at = state["evaluated_at"]
        self.evaluated_at = None if at is None else int(at)
        accuracy = state["accuracy"] if same else None
        self.accuracy = None if accuracy is None else float(accuracy)
        self.last = {int(c): float(v) for c, v in state["last"]} if same else {}
        self.best = {int(c): float(v) for c, v in state["best"]}
