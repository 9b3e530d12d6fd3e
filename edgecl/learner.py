"""Learner: embed → test-then-train → mix replay → strategy → store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecl import memory, persistence
from edgecl.backbones import check_same, from_spec
from edgecl.batch import Batch, labels_of, latents, numeric
from edgecl.labels import LabelMap
from edgecl.metrics import Prequential
from edgecl.open_learning import NotFittedError as NotFittedError  # re-exported
from edgecl.open_learning import OpenSetLearning
from edgecl.openset import Calibration
from edgecl.probe import ProbeSet
from edgecl.protocols import Backbone, ReplayStore, Strategy
from edgecl.replay import holds_inputs
from edgecl.replay.base import rng_state, set_rng_state
from edgecl.retraining import Retraining
from edgecl.task_book import TaskBook, pack, proba, task_aware
from edgecl.types import FloatArray, IntArray, Label, State


class Learner(Retraining, OpenSetLearning):
    """A continual learner: a frozen backbone, a head strategy and an optional replay store
    (and a probe, on whose held items its calibration is fitted: :meth:`predict_open`).

    >>> from edgecl.backbones import IdentityBackbone
    >>> from edgecl import strategies
    >>> learner = Learner(IdentityBackbone(2), strategies.create("ncm"))
    >>> learner.learn_many(np.array([[0.0, 1.0], [1.0, 0.0]]), ["up", "right"])
    >>> learner.predict_one(np.array([0.1, 0.9]))
    'up'
    >>> learner.learn_one(np.array([-1.0, 0.0]), "left")  # a new class, any time
    >>> learner.predict_many(np.array([[-0.9, 0.1], [0.9, 0.0]]))
    ['left', 'right']
    """

    def __init__(
        self,
        backbone: Backbone,
        strategy: Strategy,
        store: ReplayStore | None = None,
        *,
        seed: int = 0,
        window: int = 500,
        probe: ProbeSet | None = None,
    ) -> None:
        self.backbone = backbone
        self.strategy = strategy
        self.store = store
        self.labels = LabelMap()
        self.tasks = TaskBook()  # task names -> ints, samples and classes per task
        self.class_counts: list[int] = []
        self.samples_learned = 0
        self.model_version = 0
        self.prequential = Prequential(window)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.probe = probe  # holds back a share of samples, never learned (edgecl.probe)
        self.calibration = Calibration()  # fitted on the probe's items (edgecl.openset)

    # -- validation -------------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.backbone.latent_shape)

    _check_batch = staticmethod(numeric)

    def check_latents(self, z: Any) -> FloatArray:
        """Validate a latent batch ``(N, *latent_shape)`` and return it as float32."""
        return latents(z, self.latent_shape)

    def embed(self, x: Any) -> FloatArray:
        """Latents for a batch of inputs; ``ValueError`` for bad inputs."""
        return self.check_latents(self.backbone.embed(self._check_batch(x)))

    # -- raw-input memory -------------------------------------------------------------
    @property
    def keeps_inputs(self) -> bool:
        """Whether the store keeps raw inputs (embedded again whenever they are replayed)."""
        return holds_inputs(self.store)

    def prepare_inputs(self, x: Any) -> np.ndarray[Any, Any]:
        """Inputs as a raw-input store keeps them (see :func:`edgecl.memory.prepare`)."""
        return memory.prepare(self.backbone, self.store, self._check_batch(x))

    def check_inputs(self, x: Any, n: int | None) -> np.ndarray[Any, Any]:
        """Validate prepared inputs for the raw-input store (``n``: how many there must be)."""
        return memory.check_inputs(self.store, None if x is None else self._check_batch(x), n)

    def memory_latents(self, store: ReplayStore | None = None) -> tuple[FloatArray, IntArray]:
        """Every item of ``store`` (default: the learner's) as a latent, with its label; raw
        inputs are embedded through the current backbone, a chunk at a time."""
        return memory.latents(self.embed, self.store if store is None else store)

    def embed_stored(self, items: FloatArray) -> FloatArray:
        """Latents of items taken from the store: raw inputs go through the backbone now."""
        if not self.keeps_inputs or not len(items):
            return items
        return self.embed(np.asarray(items).astype(np.uint8))

    check_labels = staticmethod(labels_of)

    # -- learning ---------------------------------------------------------------------
    def learn_one(self, x: Any, label: Label) -> None:
        self.learn_many(np.asarray(x)[None, ...], [label])

    def learn_many(
        self, x: Any, labels: Sequence[Label], tasks: Sequence[Label | None] | None = None
    ) -> None:
        """Learn a batch of inputs with their labels (and tasks), all or nothing."""
        arr = self._check_batch(x)
        checked = self.check_labels(labels, len(arr))
        self.tasks.check(self.strategy, tasks, len(arr), learning=True)
        raw = self.prepare_inputs(arr) if self.keeps_inputs else None
        z = self.embed(arr if raw is None else raw)
        self.learn_latents(z, checked, inputs=raw, tasks=tasks)

    def check_batch(
        self,
        z: Any,
        labels: Sequence[object],
        inputs: Any | None = None,
        tasks: Sequence[object] | None = None,
    ) -> Batch:
        """Validate latents, labels, tasks (optional; a task-aware strategy needs them to
        learn, see :class:`edgecl.task_book.TaskBook`) and (for a raw-input store) the
        prepared inputs the latents came from (see :meth:`prepare_inputs`); ``ValueError``
        names the problem."""
        z = self.check_latents(z)
        checked = self.check_labels(labels, len(z))
        named = self.tasks.check(self.strategy, tasks, len(z), learning=True)
        raw = self.check_inputs(inputs, len(z)) if self.keeps_inputs else None
        return Batch(z, checked, raw, named)

    def learn_latents(
        self,
        z: Any,
        labels: Sequence[Label],
        *,
        inputs: Any | None = None,
        tasks: Sequence[Label | None] | None = None,
    ) -> None:
        """Learn latents directly (bypassing the backbone); validates before any change.

        A store that keeps raw inputs also needs ``inputs`` (see :meth:`check_batch`)."""
        self.learn_batch(self.check_batch(z, labels, inputs, tasks))

    def learn_batch(self, batch: Batch) -> int:
        """Learn a checked batch; with a probe, a share is held back instead (and the probe
        re-scored when due). Returns how many samples were learned."""
        rows = None  # those not held back (None: all)
        if self.probe is not None:
            t = self._tasks_of(batch.tasks, len(batch))
            kept = self.probe.divert(self, batch.z, batch.labels, t)
            rows = None if kept.all() else np.flatnonzero(kept)
        n = len(batch) if rows is None else len(rows)
        if n:
            self._learn(batch, rows)
        if self.probe is not None and self.probe.learned(self, n):
            self.calibrate()
        return n

    def _tasks_of(self, tasks: Sequence[Label | None] | None, n: int) -> IntArray:
        """Task ints of ``n`` rows (``-1``: none), new tasks added (to the head too)."""
        t = self.tasks.encode(tasks, n)
        head = task_aware(self.strategy)
        if head is not None:
            head.add_tasks(len(self.tasks))
        return t

    def _learn(self, whole: Batch, rows: IntArray | None = None) -> None:
        labels, raw, tasks = whole.parts(rows)  # the latents are read in place, not copied
        before = len(self.labels)
        t = self._tasks_of(tasks, len(labels))
        y = np.asarray(self.labels.encode_many(labels), dtype=np.int64)
        pred = np.full(len(y), -1)  # test, then train: -1 while no class is known
        if before:
            pred = np.argmax(memory.kept_proba(self.strategy, whole.z, rows, t), axis=1)
        self.prequential.update(y, pred.astype(np.int64))
        if len(self.labels) > before:
            self.strategy.add_classes(len(self.labels))
            self.class_counts.extend([0] * (len(self.labels) - before))

        def items() -> Any:
            return raw if raw is not None else whole.z if rows is None else whole.z[rows]

        keep = memory.store_first(self.store, self.strategy, items, y, t)
        memory.train(
            self.strategy, self.store, self._rng, self.embed_stored, whole.z, y, keep, t, rows
        )
        if self.store is not None and keep:
            self.store.add_many(items(), pack(y, t))
        self.tasks.taught(y, t)
        for idx in y.tolist():
            self.class_counts[idx] += 1
        self.samples_learned += len(y)
        self.model_version += 1

    # -- prediction -------------------------------------------------------------------
    def predict_proba_latents(
        self, z: Any, tasks: Sequence[Label | None] | IntArray | None = None
    ) -> FloatArray:
        """Class probabilities ``(N, n_classes)``, columns in ``self.labels`` order; a
        task-aware strategy answers each row within its task (names, or ints from the
        probe), inferring it for rows without one if it can."""
        if not len(self.labels):
            raise NotFittedError("nothing has been learned yet; learn some samples first")
        z = self.check_latents(z)
        if isinstance(tasks, np.ndarray):
            return proba(self.strategy, z, tasks)
        named = self.tasks.check(self.strategy, tasks, len(z), learning=False)
        return proba(self.strategy, z, self.tasks.lookup(named, len(z)))

    def predict_proba_many(self, x: Any, tasks: Sequence[Label | None] | None = None) -> FloatArray:
        if not len(self.labels):
            raise NotFittedError("nothing has been learned yet; learn some samples first")
        return self.predict_proba_latents(self.embed(x), tasks)

    def predict_proba_one(self, x: Any) -> dict[Label, float]:
        proba = self.predict_proba_many(np.asarray(x)[None, ...])[0]
        return {label: float(p) for label, p in zip(self.labels.labels, proba, strict=True)}

    def predict_many(self, x: Any, tasks: Sequence[Label | None] | None = None) -> list[Label]:
        p = self.predict_proba_many(x, tasks)
        return [self.labels.decode(int(i)) for i in np.argmax(p, axis=1)]

    def predict_one(self, x: Any) -> Label:
        return self.predict_many(np.asarray(x)[None, ...])[0]

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> State:
        return {
            "backbone": self.backbone.spec(),
            "strategy": _part(self.strategy),
            "store": None if self.store is None else _part(self.store),
            "labels": self.labels.state_dict(),
            "tasks": self.tasks.state_dict(),
            "class_counts": list(self.class_counts),
            "samples_learned": self.samples_learned,
            "model_version": self.model_version,
            "prequential": self.prequential.state_dict(),
            "seed": self.seed,
            "rng": rng_state(self._rng),
            "calibration": self.calibration.state_dict(),
        }

    @classmethod
    def from_state(
        cls, state: State, backbone: Backbone | None = None, probe: ProbeSet | None = None
    ) -> Learner:
        """A learner from :meth:`state_dict` (``probe``: one to attach; its state is apart)."""
        from edgecl import replay, strategies

        if backbone is None:
            backbone = from_spec(state["backbone"])
        else:
            check_same(state["backbone"], backbone.spec())
        s = state["strategy"]
        strategy = strategies.create(s["name"], **s["options"])
        strategy.load_state_dict(s["state"])
        store = None
        if state["store"] is not None:
            store = replay.create(state["store"]["name"], **state["store"]["options"])
            store.load_state_dict(state["store"]["state"])
        learner = cls(backbone, strategy, store, seed=int(state["seed"]), probe=probe)
        learner.load_bookkeeping(state)
        return learner

    def load_bookkeeping(self, state: State) -> None:
        """Labels, counts, versions, prequential history and generator from a state."""
        self.labels = LabelMap.from_state(state["labels"])
        self.tasks.load_state_dict(state.get("tasks"))  # absent from states before tasks
        self.class_counts = [int(c) for c in state["class_counts"]]
        self.samples_learned = int(state["samples_learned"])
        self.model_version = int(state["model_version"])
        self.prequential.load_state_dict(state["prequential"])
        set_rng_state(self._rng, state["rng"])
        if "calibration" in state:  # absent from states of earlier versions
            self.calibration = self.calibration.loaded(state["calibration"])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole learner atomically to ``path``."""
        persistence.save(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str], backbone: Backbone | None = None) -> Learner:
        """Load a learner written by :meth:`save` (the backbone is rebuilt from its spec)."""
        return cls.from_state(persistence.load(path), backbone)


def _part(part: Strategy | ReplayStore) -> State:
    """What rebuilds a strategy or a store: its registered name, options and state."""
    return {"name": part.name, "options": part.options(), "state": part.state_dict()}
