"""Calibration and open-set figures of a learner as a class-incremental stream is fed to
it: what ``edgecl bench openset`` tabulates and ``edgecl bench cl`` reports per strategy.

:class:`OpenMeter` is handed to :func:`edgecl.bench.cl.run` (``observe``) and keeps, after
each experience but the last, the novelty of the test images of the classes known so far
and of the stream's later ones (near-novel), and after the last, the test images'
calibrated probabilities and the novelty of another domain's images (far-novel).
:func:`summarise` turns one meter, or several (folds whose test sets together cover every
image once), into an :class:`OpenResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecl.bench.streams import ClassIncrementalStream, Latents
from edgecl.calibration import auroc, ece, ece_floor, nll, softmax_t
from edgecl.learner import Learner
from edgecl.openset import OpenPrediction, logits
from edgecl.types import Float64Array, FloatArray, IntArray


@dataclass
class OpenResult:
    """What one strategy's calibration and novelty scores gave on one stream."""

    label: str
    accuracy: float
    ece_raw: float
    ece: float
    nll_raw: float
    nll: float
    temperature: float
    near: list[float]  # AUROC after each experience but the last
    far: float
    accepted: float  # known test images under the fitted threshold, after the last
    near_flagged: list[float]  # unknown (later-class) images over it, per cut
    far_flagged: float
    held: int
    notes: list[str] = field(default_factory=list)
    floor: float = float("nan")  # ECE a model exactly as calibrated as it claims measures
    images: int = 0  # test images the figures are over


def predict(learner: Learner, z: FloatArray, chunk: int = 1000) -> OpenPrediction:
    """:meth:`edgecl.Learner.predict_open` over ``z`` a chunk at a time."""
    parts = [learner.predict_open(z[s : s + chunk]) for s in range(0, len(z), chunk)]
    return OpenPrediction(
        np.concatenate([p.proba for p in parts]),
        np.concatenate([p.novelty for p in parts]),
        np.concatenate([p.unknown for p in parts]),
        parts[0].threshold,
    )


def indices(learner: Learner, y: IntArray) -> IntArray:
    """The learner's class index of each stream label."""
    return np.array([learner.labels.index(int(c)) for c in y], dtype=np.int64)


class OpenMeter:
    """Collects a learner's open-set answers after each experience (``after``, the
    ``observe`` hook of :func:`edgecl.bench.cl.run`). ``far``: another domain's latents
    (None: no far-novel figure)."""

    def __init__(self, stream: ClassIncrementalStream, far: Latents | None) -> None:
        self.stream, self.far = stream, far
        self.cuts: list[tuple[Float64Array, Float64Array, np.ndarray]] = []  # known, unknown
        self.final: OpenPrediction | None = None
        self.far_answer: OpenPrediction | None = None
        self.raw: Float64Array = np.zeros((0, 0))
        self.y: IntArray = np.zeros(0, np.int64)
        self.temperature, self.held, self.notes = 1.0, 0, list[str]()

    def after(self, i: int, learner: Learner) -> None:
        stream, last = self.stream, len(self.stream.classes) - 1
        if i < last:
            later = [c for classes in stream.classes[i + 1 :] for c in classes]
            k = predict(learner, stream.test_seen(i).z)
            u = predict(learner, stream.test.of_classes(later).z)
            self.cuts.append((k.novelty, u.novelty, u.unknown))
            return
        test = stream.test_seen(last)
        self.y = indices(learner, test.y)
        self.final = predict(learner, test.z)
        chunks = range(0, len(test), 1000)
        self.raw = np.concatenate([logits(learner.strategy, test.z[s : s + 1000]) for s in chunks])
        self.far_answer = None if self.far is None else predict(learner, self.far.z)
        cal = learner.calibration
        self.temperature = cal.temperature
        self.held = 0 if learner.probe is None else learner.probe.held
        if cal.status != "fitted":
            self.notes.append(f"calibration {cal.status}: {cal.reason}")


def summarise(label: str, meters: list[OpenMeter]) -> OpenResult:
    """The figures of one meter, or of several pooled (each image in one fold's test set):
    accuracy, ECE and NLL over every test image together; AUROC per run, then the mean
    (each run's novelty has its own scale); temperature and probe items: the runs'
    geometric and arithmetic means."""
    finals = [m.final for m in meters if m.final is not None]
    if len(finals) != len(meters):
        raise ValueError("a meter saw no last experience")
    y = np.concatenate([m.y for m in meters])
    width = max(m.raw.shape[1] for m in meters)  # a fold may know fewer classes
    raw = np.concatenate([_pad(m.raw, width) for m in meters])
    proba = np.concatenate([_pad(f.proba, width, 0.0) for f in finals])
    temps = np.array([m.temperature for m in meters])
    cuts = min(len(m.cuts) for m in meters)
    # AUROC per fold, then the mean: each fold's novelty has its own scale.
    near = [float(np.mean([auroc(*m.cuts[c][:2]) for m in meters])) for c in range(cuts)]
    flagged = [float(np.concatenate([m.cuts[c][2] for m in meters]).mean()) for c in range(cuts)]
    pairs = [
        (f, m.far_answer) for f, m in zip(finals, meters, strict=True) if m.far_answer is not None
    ]
    far = float(np.mean([auroc(f.novelty, a.novelty) for f, a in pairs])) if pairs else np.nan
    far_flagged = float(np.mean([a.unknown.mean() for _, a in pairs])) if pairs else np.nan
    return OpenResult(
        label,
        accuracy=float(np.mean(proba.argmax(axis=1) == y)),
        ece_raw=ece(softmax_t(raw, 1.0), y),
        ece=ece(proba, y),
        nll_raw=nll(raw, y, 1.0),
        nll=sum(nll(m.raw, m.y, m.temperature) * len(m.y) for m in meters) / len(y),
        temperature=float(np.exp(np.mean(np.log(temps)))),
        near=near,
        far=far,
        accepted=float(1.0 - np.concatenate([f.unknown for f in finals]).mean()),
        near_flagged=flagged,
        far_flagged=far_flagged,
        held=int(round(np.mean([m.held for m in meters]))),
        notes=sorted({n for m in meters for n in m.notes}),
        floor=ece_floor(proba),
        images=len(y),
    )


def _pad(a: Float64Array, width: int, fill: float = -np.inf) -> Float64Array:
    """``a`` with columns of ``fill`` up to ``width`` (a class a fold never saw)."""
    out = np.full((len(a), width), fill)
    out[:, : a.shape[1]] = a
    return out
