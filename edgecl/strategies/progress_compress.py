"""Progress & Compress (Schwarz et al., ICML 2018) with heads for columns."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgecl.strategies.base import energy, masked_logits
from edgecl.strategies.ewc import squared_grads
from edgecl.strategies.experience import (
    ExperienceHead,
    add_rows,
    copy_params,
    grow_like,
    load_params,
    pull,
    rows,
)
from edgecl.strategies.linear import Float64Array, check_latents, positive_float, positive_int
from edgecl.strategies.net import Net, Params, forward, sgd_net, soft_max
from edgecl.types import FloatArray, IntArray, State


class ProgressCompress(ExperienceHead):
    """Progress & Compress: an active column learns each experience, then is distilled
    into the knowledge base under online EWC.

    *Progress*: the active column (a head, ``self.net``) learns the experience's batches
    by SGD on cross-entropy, as ``naive``. *Compress*, at the experience boundary
    (:mod:`edgecl.strategies.experience`): the knowledge base (another head) is trained for
    ``compress_epochs`` epochs to match the active column's softmax on the experience's
    latents (``KL(active ‖ knowledge base)``, over every class trained so far) plus the
    online-EWC penalty ``λ/2 F (θ - θ*)²`` of its earlier compressions; then its empirical
    Fisher on those latents joins ``F ← γ F + F_t`` and ``θ* ←`` its parameters (``λ F``
    capped at ``1 / lr`` per parameter, as in ``ewc``).

    Deviations forced by a head on latents: the paper's active column takes lateral
    connections from the knowledge base's layers; a head has no layers below it to take
    them from, so instead **the active column starts each experience as a copy of the
    knowledge base**. The compress phase needs the experience's data after it ended, which
    the stream does not keep, so the strategy keeps a reservoir of up to ``buffer_size``
    latents of the current experience (float32: ``buffer_size × D × 4`` bytes, in the
    state; emptied at each boundary).

    Prediction: classes already compressed into the knowledge base are answered by its
    logits, classes learned since the last compression by the active column's (before
    the first compression, the active column answers everything).

    Hyper-parameters (defaults): ``ewc_lambda`` (100.0, as ``ewc``), ``gamma`` (1.0,
    Schwarz et al.'s ``γ``; below 1 old Fishers fade), ``compress_epochs`` (5),
    ``buffer_size`` (500), ``consolidate_every`` (0), ``hidden`` (none: linear heads), and
    the SGD of :class:`~edgecl.strategies.naive.Naive` (``lr`` 0.01, ``epochs`` 3,
    ``batch_size`` 32, ``weight_decay`` 0, ``seed`` 0), used by both phases. No replay.

    >>> s = ProgressCompress(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0]], np.float32), np.array([0]))
    >>> s.learn_many(np.array([[0, 1]], np.float32), np.array([1]))  # compress, then progress
    >>> s.kb_classes.tolist(), s.buffer_y.tolist()
    ([0], [1])
    """

    name = "progress_compress"

    def __init__(
        self,
        ewc_lambda: float = 100.0,
        gamma: float = 1.0,
        compress_epochs: int = 5,
        buffer_size: int = 500,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
        consolidate_every: int = 0,
    ) -> None:
        super().__init__(lr, epochs, batch_size, weight_decay, seed, 0, hidden, consolidate_every)
        self.ewc_lambda = positive_float("ewc_lambda", ewc_lambda, allow_zero=True)
        self.gamma = positive_float("gamma", gamma, allow_zero=True)
        if self.gamma > 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        self.compress_epochs = positive_int("compress_epochs", compress_epochs)
        self.buffer_size = positive_int("buffer_size", buffer_size)
        self.kb = Net(self.hidden, seed)
        self.kb_classes = np.zeros(0, dtype=np.int64)
        self.fisher: Params = {}
        self.anchor: Params = {}
        self.buffer_x = np.zeros((0, 0), dtype=np.float32)
        self.buffer_y = np.zeros(0, dtype=np.int64)
        self.buffer_seen = 0

    def add_classes(self, n_classes: int) -> None:
        super().add_classes(n_classes)
        self.kb.grow(n_classes)

    def fit(self, x: FloatArray, labels: IntArray) -> None:
        super().fit(x, labels)
        self.keep(x, labels)

    def keep(self, x: FloatArray, labels: IntArray) -> None:
        """Reservoir-sample the batch into the experience's buffer."""
        if not len(self.buffer_x):
            self.buffer_x = np.zeros((0, x.shape[1]), dtype=np.float32)
        rng = np.random.default_rng([self.sgd.seed, 2, self.calls])
        room = max(0, self.buffer_size - len(self.buffer_y))
        bx, by = [self.buffer_x, x[:room]], [self.buffer_y, labels[:room]]
        self.buffer_x, self.buffer_y = np.concatenate(bx), np.concatenate(by)
        for i in range(room, len(x)):
            j = int(rng.integers(0, self.buffer_seen + i + 1))
            if j < self.buffer_size:
                self.buffer_x[j], self.buffer_y[j] = x[i], labels[i]
        self.buffer_seen += len(x)

    def consolidate(self) -> None:
        x, labels = self.buffer_x, self.buffer_y
        if not len(labels):
            return
        self.kb.grow(len(self.counts), self.dim)
        cols = np.flatnonzero(self.counts > 0)
        active = self.net.view(cols)
        targets = soft_max(forward(active, x)[0])
        work = self.kb.view(cols)
        local = np.searchsorted(cols, labels)
        penalty = None
        if self.fisher and self.ewc_lambda:
            lam = self.ewc_lambda
            f = rows(grow_like(self.fisher, self.kb.params), work, cols)
            a = rows(grow_like(self.anchor, self.kb.params), work, cols)
            penalty = pull({k: lam * f[k] for k in f}, a, self.sgd.lr)
        rng = self.sgd.rng(self.calls)
        sgd_net(work, x, local, self.sgd, rng, epochs=self.compress_epochs, penalty=penalty,
                targets=targets)  # fmt: skip
        self.kb.put(cols, work)
        f_t = grow_like({}, self.kb.params)
        add_rows(f_t, squared_grads(self.kb.view(cols), x, local), cols)
        f_t = {k: v / len(x) for k, v in f_t.items()}
        old = grow_like(self.fisher, self.kb.params)
        self.fisher = {k: self.gamma * old[k] + f_t[k] for k in f_t}
        self.anchor = copy_params(self.kb.params)
        self.kb_classes = cols
        self.net = self.kb.copy()  # the next active column starts from the knowledge base
        self.buffer_x, self.buffer_y, self.buffer_seen = self.buffer_x[:0], self.buffer_y[:0], 0

    def logits_many(self, z: FloatArray) -> Float64Array:
        x = check_latents(z, self.dim)
        scores = self.net.scores(x).astype(np.float64)
        if len(self.kb_classes):
            scores[:, self.kb_classes] = self.kb.scores(x)[:, self.kb_classes]
        return masked_logits(scores, self.counts > 0)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        return energy(self.logits_many(z))

    def snapshot(self) -> Any:
        clone = copy.copy(self)
        clone.net, clone.kb, clone.counts = self.net.copy(), self.kb.copy(), self.counts.copy()
        return clone

    def more_state(self) -> State:
        return {
            "kb": self.kb.state(),
            "kb_classes": self.kb_classes.copy(),
            "fisher": copy_params(self.fisher),
            "anchor": copy_params(self.anchor),
            "buffer_x": self.buffer_x.copy(),
            "buffer_y": self.buffer_y.copy(),
            "buffer_seen": self.buffer_seen,
        }

    def load_more(self, state: State) -> None:
        self.kb = Net(self.hidden, self.sgd.seed)
        if "kb" in state:
            self.kb.load(state["kb"])
        self.kb.grow(len(self.counts))
        self.kb_classes = np.array(state.get("kb_classes", []), dtype=np.int64)
        self.fisher = load_params(state.get("fisher", {}))
        self.anchor = load_params(state.get("anchor", {}))
        self.buffer_x = np.array(state.get("buffer_x", np.zeros((0, 0))), dtype=np.float32)
        self.buffer_y = np.array(state.get("buffer_y", []), dtype=np.int64)
        self.buffer_seen = int(state.get("buffer_seen", 0))
