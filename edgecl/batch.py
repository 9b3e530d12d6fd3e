"""A batch checked once: latents, labels and (for a raw-input store) the raw inputs;
and the checks themselves.

:meth:`edgecl.Learner.check_batch` is the only maker; whatever takes a :class:`Batch`
(the learner, its probe, the daemon's writer) trusts it and checks nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecl.types import FloatArray, Label, check_label


def numeric(x: Any) -> np.ndarray[Any, Any]:
    """``x`` as a non-empty numeric array of samples, without NaN or infinities."""
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"inputs must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError("the batch is empty; give at least one sample")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("inputs contain NaN or infinite values")
    return arr


def latents(z: Any, shape: tuple[int, ...]) -> FloatArray:
    """A latent batch ``(N, *shape)`` as contiguous float32.

    >>> latents([[1e308, 0.0]], (2,))
    Traceback (most recent call last):
    ...
    ValueError: values overflow float32 (|x| > 3.4e38)
    """
    arr = numeric(z)
    if tuple(arr.shape[1:]) != shape:
        raise ValueError(
            f"latent dimension mismatch: expected samples of shape {shape}, "
            f"got {tuple(arr.shape[1:])}"
        )
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    # Checked again after the cast: 1e308 is finite as float64 but inf as float32.
    if not np.all(np.isfinite(out)):
        raise ValueError("values overflow float32 (|x| > 3.4e38)")
    return out


def labels_of(labels: Sequence[object], n: int) -> list[Label]:
    """``n`` labels, each a str or an int (not a bool)."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise ValueError("labels must be a sequence of str or int, one per sample")
    if len(labels) != n:
        raise ValueError(f"got {n} samples but {len(labels)} labels")
    return [check_label(label) for label in labels]


@dataclass(frozen=True)
class Batch:
    """``z`` float32 ``(N, *latent_shape)``, ``labels`` one per row, ``inputs`` the prepared
    uint8 inputs the latents came from when the store keeps those (else None), ``tasks``
    one task per row (None when no row has one).

    >>> b = Batch(np.zeros((3, 2), np.float32), ["a", "b", "a"])
    >>> len(b.select([0, 2])), b.select([0, 1, 2]) is b, Batch.join([b, b]).labels
    (2, True, ['a', 'b', 'a', 'a', 'b', 'a'])
    >>> b.rows(1, 3).labels, b.rows(1, 3).z.base is b.z
    (['b', 'a'], True)
    """

    z: FloatArray
    labels: list[Label]
    inputs: np.ndarray[Any, Any] | None = None
    #: one task name per row (None: the row has none); None: no row has one
    tasks: list[Label | None] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, rows: Sequence[int] | np.ndarray[Any, Any]) -> Batch:
        """The rows ``rows`` (indices, or a boolean mask), still checked; all rows in order
        give this batch itself (a batch is never changed in place), not a copy of its
        latents."""
        index = np.asarray(rows)
        if index.dtype == np.bool_:
            index = np.flatnonzero(index)
        index = index.astype(np.intp, copy=False)
        if len(index) == len(self) and np.array_equal(index, np.arange(len(self))):
            return self
        return Batch(self.z[index], *self.parts(index))

    def parts(
        self, rows: np.ndarray[Any, Any] | None
    ) -> tuple[list[Label], np.ndarray[Any, Any] | None, list[Label | None] | None]:
        """Labels, inputs and tasks of rows ``rows`` (indices; None: all), without copying
        the latents (a micro-batch's are tens of MiB; they are read in place by row)."""
        if rows is None:
            return self.labels, self.inputs, self.tasks
        inputs = None if self.inputs is None else self.inputs[rows]
        tasks = None if self.tasks is None else [self.tasks[int(i)] for i in rows]
        return [self.labels[int(i)] for i in rows], inputs, tasks

    def rows(self, start: int, stop: int) -> Batch:
        """Rows ``start`` to ``stop`` (excluded), sharing this batch's arrays (no copy)."""
        inputs = None if self.inputs is None else self.inputs[start:stop]
        tasks = None if self.tasks is None else self.tasks[start:stop]
        return Batch(self.z[start:stop], self.labels[start:stop], inputs, tasks)

    @staticmethod
    def join(batches: Sequence[Batch]) -> Batch:
        """One batch of several checked ones, in order (all with inputs, or none)."""
        if len(batches) == 1:
            return batches[0]
        z = np.concatenate([b.z for b in batches])
        labels = [label for b in batches for label in b.labels]
        kept = [b.inputs for b in batches if b.inputs is not None]
        if kept and len(kept) != len(batches):
            raise ValueError("batches to join must all carry raw inputs, or none")
        tasks = None
        if any(b.tasks is not None for b in batches):
            tasks = [t for b in batches for t in (b.tasks or [None] * len(b))]
        return Batch(z, labels, np.concatenate(kept) if kept else None, tasks)
