"""Generative negative replay: generated latents of old classes only as negatives."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.generative_replay import GenerativeReplay
from edgecl.strategies.gradient import added, gradient
from edgecl.strategies.net import Params
from edgecl.types import FloatArray, IntArray


class GenerativeNegativeReplay(GenerativeReplay):
    """Graffieti et al. 2022 ("Generative negative replay for continual learning"): the
    generated data are poor positives for their own classes but good negatives for the new
    ones, so they only teach the new classes what they are not.

    The generator and the head are :class:`~edgecl.strategies.generative_replay.
    GenerativeReplay`'s (per-class diagonal Gaussians fitted streaming, no sample kept, a
    softmax over trained classes). The rule implemented, per SGD minibatch:

    - a real latent adds its cross-entropy over every trained class's output, and its
      gradient reaches every trained row (as plain SGD);
    - a generated latent of an old class ``c`` adds its cross-entropy with target ``c``
      over every trained class's output too, but its gradient reaches only the rows of the
      new classes (those in the current batch), and the hidden layers (if any) only through
      those rows: it pushes their scores down on old-class latents, and no old class's
      row, ``c``'s included, is ever trained on generated data;
    - generated classes are drawn uniformly among the classes fitted before the batch and
      not in it (generating a class of the batch would be a positive for a new class).

    A minibatch's loss is the mean over its real rows plus the mean over its generated
    rows (so a lone real sample of a new class is not drowned by 32 negatives).
    Hyper-parameters and defaults are ``generative_replay``'s.

    Deviations: the paper replays at an intermediate layer of a network trained with AR1*
    on CORe50 with a generator per experience; here the cut is wherever the backbone ends,
    the head a softmax on latents, and "new" means the classes of the current batch, so no
    task boundary is needed.

    >>> s = GenerativeNegativeReplay(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[2, 0]], np.float32)).argmax(axis=1).tolist()
    [0]
    """

    name = "generative_negative_replay"

    def old_classes(self, labels: IntArray) -> IntArray:
        """Every fitted class the batch does not bring."""
        fitted = self.generator.fitted.copy()
        fitted[labels] = False
        out: IntArray = np.flatnonzero(fitted)
        return out

    def train(self, x: FloatArray, labels: IntArray, xg: FloatArray, yg: IntArray) -> None:
        """SGD where the generated rows' gradient reaches the batch's classes' rows only."""
        n_real = len(x)
        cols = np.flatnonzero(self.trained)
        new_rows = np.isin(cols, labels)

        def direction(
            work: Params, xb: FloatArray, yb: IntArray, cols: IntArray, idx: IntArray
        ) -> Params:
            real = idx < n_real
            g = {k: np.zeros_like(v) for k, v in work.items()}
            for part, rows in ((real, None), (~real, new_rows)):
                if part.any():
                    g = added(g, gradient(work, xb[part], yb[part], rows))
            return g

        self.descend(np.concatenate([x, xg]), np.r_[labels, yg], direction)
