"""Run strategies through a class-incremental latent stream and measure what they keep.

Each strategy runs with the recipe below: its store (the memory policy of its paper), the
batch size its stream is fed in, and, for GDumb, a retrain from memory at the end of each
experience. Every stored item costs ``memory_items`` of the budget, whatever the encoding
(``@float32`` keeps as many items at four times the bytes; ``@pq`` keeps the bytes of
``memory_items`` int8 items and fits as many codes as they allow).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecl import replay, strategies
from edgecl.bench.recipes import Recipe
from edgecl.bench.streams import ClassIncrementalStream, Latents, PrecomputedBackbone
from edgecl.learner import Learner
from edgecl.probe import ProbeSet
from edgecl.replay.compress import item_nbytes
from edgecl.strategies.gdumb import GDumb
from edgecl.types import IntArray

log = logging.getLogger("edgecl.bench")


@dataclass
class Result:
    """Accuracy on the test samples of the classes seen so far, after each experience;
    ``by_experience[i][j]``: accuracy on experience ``j``'s classes after experience ``i``.

    >>> r = Result("x", [1.0, 0.75], 1.0, 1, by_experience=[[1.0], [0.5, 1.0]])
    >>> r.forgetting, r.bwt
    (0.5, -0.5)
    """

    label: str
    accuracies: list[float]
    learn_seconds: float
    samples: int
    store: str | None = None
    items: int = 0
    store_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    by_experience: list[list[float]] = field(default_factory=list)
    #: Calibration and open set after the stream (edgecl.bench.open_measure), when measured:
    #: ECE, near-novel AUROC (mean over the cuts) and far-novel AUROC.
    open: tuple[float, float, float] | None = None

    @property
    def final(self) -> float:
        return self.accuracies[-1]

    @property
    def forgetting(self) -> float:
        """Mean over all but the last experience of its best accuracy before the end
        minus its final accuracy (Chaudhry et al. 2018)."""
        r = self.by_experience
        drops = [max(r[i][j] for i in range(j, len(r) - 1)) - r[-1][j] for j in range(len(r) - 1)]
        return float(np.mean(drops)) if drops else float("nan")

    @property
    def bwt(self) -> float:
        """Backward transfer: mean over all but the last experience of its final accuracy
        minus its accuracy right after it was learned (Lopez-Paz & Ranzato 2017)."""
        r = self.by_experience
        deltas = [r[-1][j] - r[j][j] for j in range(len(r) - 1)]
        return float(np.mean(deltas)) if deltas else float("nan")

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.learn_seconds if self.learn_seconds > 0 else float("nan")

    @property
    def bytes_per_item(self) -> float:
        return self.store_bytes / self.items if self.items else 0.0


def store_budget(kind: str, encoding: str, shape: tuple[int, ...], items: int) -> int:
    """``max_bytes`` that holds ``items`` latents of ``shape`` in store ``kind``.

    >>> store_budget("class_balanced", "int8", (1280,), 1500)
    1938000
    """
    factory = replay.create(kind, max_bytes=1 << 30)
    extra = int(getattr(factory, "extra_nbytes", 0))
    per_item = item_nbytes("int8" if encoding == "pq" else encoding, shape)
    return items * (per_item + extra)


def hits(learner: Learner, data: Latents, chunk: int = 1000) -> np.ndarray[Any, Any]:
    """Per sample of ``data``: whether the learner labels it right."""
    out = []
    for start in range(0, len(data), chunk):
        proba = learner.predict_proba_latents(data.z[start : start + chunk])
        predicted = np.array([learner.labels.decode(int(i)) for i in proba.argmax(axis=1)])
        out.append(predicted == data.y[start : start + chunk])
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def by_experience(
    correct: np.ndarray[Any, Any], y: IntArray, stream: ClassIncrementalStream, i: int
) -> list[float]:
    """Accuracy on each experience ``0..i``'s classes, from per-sample hits on its test."""
    return [float(np.mean(correct[np.isin(y, stream.classes[j])])) for j in range(i + 1)]


def build(recipe: Recipe, shape: tuple[int, ...], memory_items: int, seed: int) -> Learner:
    options = dict(recipe.options)
    if recipe.replay_all:
        options.setdefault("replay_size", memory_items)
    strategy = strategies.create(recipe.strategy, **options)
    store = None
    if recipe.store is not None:
        budget = store_budget(recipe.store, recipe.encoding, shape, memory_items)
        options = {"max_bytes": budget, "seed": seed, **recipe.store_options}
        if recipe.encoding == "pq":
            store = replay.create("pq", policy=recipe.store, **options)
        else:
            store = replay.create(recipe.store, encoding=recipe.encoding, **options)
    return Learner(PrecomputedBackbone(shape), strategy, store, seed=seed)


def run(
    recipe: Recipe,
    stream: ClassIncrementalStream,
    *,
    memory_items: int = 1500,
    seed: int = 0,
    on_experience: Callable[[int, float], None] | None = None,
    probe_share: float = 0.0,
    observe: Callable[[int, Learner], None] | None = None,
) -> Result:
    """Learn ``stream`` once with ``recipe`` (or :func:`joint`); accuracy after each experience.

    ``probe_share`` > 0: through a probe holding back that share (the daemon's other
    defaults), on whose items the calibration is fitted; ``observe(i, learner)`` is called
    after experience ``i`` is learned and scored (and the probe re-scored, the calibration
    refitted), outside the timed part."""
    if recipe.strategy == "joint":
        return joint(stream, seed=seed, **recipe.options)
    learner = build(recipe, stream.latent_shape, memory_items, seed)
    if probe_share > 0:
        learner.probe = ProbeSet(share=probe_share, seed=seed)
    accuracies: list[float] = []
    matrix: list[list[float]] = []
    seconds, samples, retrain_s = 0.0, 0, 0.0
    for i, exp in enumerate(stream.experiences()):
        start = time.perf_counter()
        for s in range(0, len(exp), recipe.batch):
            learner.learn_latents(exp.z[s : s + recipe.batch], exp.y[s : s + recipe.batch].tolist())
        if recipe.retrain:
            t = time.perf_counter()
            learner.retrain()
            retrain_s += time.perf_counter() - t
        seconds += time.perf_counter() - start
        samples += len(exp)
        test = stream.test_seen(i)
        correct = hits(learner, test)
        accuracies.append(float(np.mean(correct)))
        matrix.append(by_experience(correct, test.y, stream, i))
        log.info("%s: experience %d accuracy %.4f", recipe.label, i + 1, accuracies[-1])
        if on_experience is not None:
            on_experience(i, accuracies[-1])
        if observe is not None:
            if learner.probe is not None and not recipe.retrain:
                learner.rescore()  # a recipe that retrains has just refitted
            observe(i, learner)
    result = Result(recipe.label, accuracies, seconds, samples, by_experience=matrix)
    if recipe.note:
        result.notes.append(recipe.note)
    if learner.store is not None:
        result.store, result.items = learner.store.name, len(learner.store)
        result.store_bytes = learner.store.nbytes
        if recipe.encoding == "pq":
            result.store = f"pq({recipe.store})"
    elif callable(held := getattr(learner.strategy, "nbytes", None)):
        result.store_bytes = int(held())  # what it keeps instead (exemplars, generators)
    if recipe.retrain:
        result.notes.append(f"retrains {retrain_s:.1f} s of it")
    return result


def joint_heads(
    stream: ClassIncrementalStream, *, epochs: int = 32, batch_size: int = 64, seed: int = 0
) -> Iterator[tuple[int, GDumb, float]]:
    """After each experience ``i``, a softmax head trained offline on every sample of the
    classes seen so far (GDumb's trainer and schedule with the memory being all of it):
    ``(i, head, seconds it took)``."""
    seen: list[Latents] = []
    for i, exp in enumerate(stream.experiences()):
        seen.append(exp)
        z = np.concatenate([e.z for e in seen])
        y = np.concatenate([e.y for e in seen])
        start = time.perf_counter()
        head = GDumb(lr=0.05, min_lr=0.0005, epochs=epochs, batch_size=batch_size, seed=seed)
        head.add_classes(int(y.max()) + 1)
        head.learn_many(z, y)
        head.load_state_dict(head.retrain(z, y, lambda fraction: True))
        yield i, head, time.perf_counter() - start


def joint(
    stream: ClassIncrementalStream, *, epochs: int = 32, batch_size: int = 64, seed: int = 0
) -> Result:
    """The offline upper bound: :func:`joint_heads` scored after each experience."""
    accuracies: list[float] = []
    matrix: list[list[float]] = []
    seconds = 0.0
    for i, head, took in joint_heads(stream, epochs=epochs, batch_size=batch_size, seed=seed):
        seconds += took
        test = stream.test_seen(i)
        correct = head.predict_proba_many(test.z).argmax(axis=1) == test.y
        accuracies.append(float(np.mean(correct)))
        matrix.append(by_experience(correct, test.y, stream, i))
        log.info("joint: experience %d accuracy %.4f", i + 1, accuracies[-1])
    total = sum(len(e) for e in stream.experiences())
    notes = [f"{epochs} epochs, lr 0.05"]
    return Result("joint (offline)", accuracies, seconds, total, notes=notes, by_experience=matrix)
