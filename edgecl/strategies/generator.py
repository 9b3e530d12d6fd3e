"""A per-class generator of latents: a small mixture of diagonal Gaussians per class,
fitted one sample at a time (sequential k-means assignment, Welford moments)."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import grow_rows
from edgecl.types import FloatArray, IntArray, State


class ClassGaussians:
    """Up to ``components`` diagonal Gaussians per class, fitted streaming.

    A sample of class ``c`` starts a new component while ``c`` has fewer than
    ``components``; afterwards it joins the component whose mean is nearest (MacQueen's
    sequential k-means). Each component keeps its count, mean and sum of squared deviations
    (Welford, each update in float64, kept as float32: the latents' own precision), so its
    mean and (population) variance are those of the samples it took. It holds
    ``n_classes * components * 2 * D`` float32 numbers and the counts, never a sample
    (:meth:`nbytes`).

    >>> g = ClassGaussians(components=1)
    >>> g.grow(1, 2)
    >>> g.fit(np.array([[0.0, 1.0], [2.0, 3.0]], np.float32), np.array([0, 0]))
    >>> g.means[0, 0].tolist(), g.variances()[0, 0].tolist()
    ([1.0, 2.0], [1.0, 1.0])
    """

    def __init__(self, components: int = 1) -> None:
        self.components = components
        self.counts = np.zeros((0, components), dtype=np.int64)
        self.means = np.zeros((0, components, 0), dtype=np.float32)
        self.m2 = np.zeros((0, components, 0), dtype=np.float32)

    def grow(self, n_classes: int, dim: int) -> None:
        """Room for ``n_classes`` classes of ``dim``-d latents (``dim`` fixed once known)."""
        if self.means.shape[2] == 0 and dim:
            k = self.components
            self.means = np.zeros((len(self.counts), k, dim), dtype=np.float32)
            self.m2 = np.zeros((len(self.counts), k, dim), dtype=np.float32)
        self.counts = grow_rows(self.counts, n_classes)
        self.means = grow_rows(self.means, n_classes)
        self.m2 = grow_rows(self.m2, n_classes)

    def fit(self, x: FloatArray, labels: IntArray) -> None:
        """Take each sample into its class's mixture, in order."""
        for row, c in zip(np.asarray(x, np.float64), labels.tolist(), strict=True):
            used = int(np.count_nonzero(self.counts[c]))
            if used < self.components:
                k = used
            else:
                k = int(np.argmin(np.sum((self.means[c] - row) ** 2, axis=1)))
            self.counts[c, k] += 1
            mean = self.means[c, k].astype(np.float64)
            delta = row - mean
            mean += delta / self.counts[c, k]
            self.means[c, k] = mean
            self.m2[c, k] += delta * (row - mean)

    @property
    def fitted(self) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
        """Which classes have taken a sample."""
        return np.asarray(self.counts.sum(axis=1) > 0)

    def variances(self) -> np.ndarray[tuple[int, int, int], np.dtype[np.float64]]:
        """Each component's population variance per dimension (0 for an empty one)."""
        n = np.maximum(self.counts, 1)[:, :, None]
        return np.asarray(self.m2.astype(np.float64) / n, dtype=np.float64)

    def sample(self, classes: IntArray, rng: np.random.Generator) -> FloatArray:
        """One latent per entry of ``classes`` (each fitted): a component drawn by its
        share of the class's samples, then a draw from its Gaussian."""
        out = np.zeros((len(classes), self.means.shape[2]), dtype=np.float32)
        if not len(classes):
            return out
        std = np.sqrt(self.variances())
        noise = rng.standard_normal(out.shape)
        for i, c in enumerate(classes.tolist()):
            share = self.counts[c] / self.counts[c].sum()
            k = int(rng.choice(self.components, p=share)) if self.components > 1 else 0
            out[i] = self.means[c, k] + std[c, k] * noise[i]
        return out

    def nbytes(self) -> int:
        """The bytes its parameters hold (counts, means, squared deviations)."""
        return int(self.counts.nbytes + self.means.nbytes + self.m2.nbytes)

    def state_dict(self) -> State:
        return {"counts": self.counts.copy(), "means": self.means.copy(), "m2": self.m2.copy()}

    def load_state_dict(self, state: State) -> None:
        self.counts = np.array(state["counts"], dtype=np.int64)
        self.means = np.array(state["means"], dtype=np.float32)
        self.m2 = np.array(state["m2"], dtype=np.float32)

    def copy(self) -> ClassGaussians:
        out = ClassGaussians(self.components)
        out.load_state_dict(self.state_dict())
        return out
