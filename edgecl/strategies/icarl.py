"""iCaRL on latents: herding exemplars, nearest mean of exemplars, distillation."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.base import masked_logits
from edgecl.strategies.gradient import GradientHead
from edgecl.strategies.herding import Exemplars, normalize
from edgecl.strategies.linear import (
    check_latents,
    grow_rows,
    masked_softmax,
    positive_float,
    positive_int,
)
from edgecl.strategies.net import Params, backward, forward, joined, out_name, split_state
from edgecl.strategies.stores import ITEMS, NONE
from edgecl.types import Float64Array, FloatArray, IntArray, State

CLASSIFIERS = ("nme", "head")


def sigmoid(s: Float64Array) -> Float64Array:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * s)), dtype=np.float64)


class ICaRL(GradientHead):
    """iCaRL (Rebuffi et al. 2017, "iCaRL: Incremental Classifier and Representation
    Learning") with the backbone frozen and a head on its latents (linear, or ``hidden``
    ReLU layers first).

    - Exemplars: herding per class within ``memory_items`` (:class:`~edgecl.strategies.
      herding.Exemplars`): the strategy keeps them in its own state, because herding picks
      items by the class mean of all its samples, which no store policy of the learner's
      does, and a strategy never writes the learner's store; so its paper store is none and
      :meth:`nbytes` reports what it holds (float32 latents, the running means).
    - Classifier: nearest mean of exemplars, on L2-normalised features (the last hidden
      layer's, or the latent's with no hidden layer); probabilities are a softmax of
      ``-distance / temperature``. With a linear head the feature iCaRL averages is the
      latent itself, so the prediction does not depend on the trained head
      at all: this is herded exemplars plus a nearest-class-mean on them. ``classifier =
      "head"`` answers with the trained head instead (softmax of its scores).
    - Training the head: sigmoid binary cross-entropy per class over the batch and
      ``exemplar_replay`` exemplars drawn at random; targets are one-hot for the classes of
      the current experience and, for the classes known at its start, the outputs of the
      head as it was then (distillation, as the paper).

    Hyper-parameters (defaults): ``memory_items`` (1500, the budget every memory here has;
    the paper's K is 2000 on CIFAR-100), ``exemplar_replay`` (32: exemplars trained on per
    call), ``temperature`` (0.1), ``classifier`` ("nme"), ``lr`` (0.01), ``epochs`` (3),
    ``batch_size`` (64), ``seed`` (0: minibatch order and exemplar draws), ``hidden``
    (none: widths of ReLU layers before the output layer; with them the nearest-mean
    classifier averages and compares the last hidden layer's features, as the paper does
    with its trained feature extractor, and the prototypes follow the head as it trains;
    herding still picks exemplars on the latents, see below).

    Deviations forced by a stream: the paper herds each class from all its data at the
    end of its task; a stream sees each item once, so the running mean of every sample of
    the class is kept and herding runs over the held exemplars and the arrivals when they
    no longer fit (see :class:`~edgecl.strategies.herding.Exemplars`), on the latents,
    which do not move, rather than on hidden features that change as the head trains. A
    task is an experience: it begins with a batch that brings a class not seen before, and the head
    distilled from is the head as it was just before that batch.

    >>> s = ICaRL()
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[2, 0.5]], np.float32)).argmax(axis=1).tolist()
    [0]
    """

    name = "icarl"
    paper_store = NONE

    def __init__(
        self,
        memory_items: int = ITEMS,
        exemplar_replay: int = 32,
        temperature: float = 0.1,
        classifier: str = "nme",
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 64,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, hidden)
        self.memory_items = positive_int("memory_items", memory_items)
        self.exemplar_replay = positive_int("exemplar_replay", exemplar_replay, minimum=0)
        self.temperature = positive_float("temperature", temperature)
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        self.classifier = classifier
        self.exemplars = Exemplars(self.memory_items)
        self.old = self.net.copy()  # the head distilled from
        self.old_known = np.zeros(0, dtype=bool)
        self.prototypes, self.has = self.exemplars.means(0)

    def add_classes(self, n_classes: int) -> None:
        super().add_classes(n_classes)
        self.old.grow(n_classes)
        self.old_known = grow_rows(self.old_known, n_classes)
        self.refresh()

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = self.check(z, y)
        if not len(x):
            return
        before, known = self.experiences, self.trained.copy()
        self.begin(x, labels)
        if self.experiences != before:  # a new experience: distil from the head as it was
            self.old, self.old_known = self.net.copy(), known
        xe, ye = self.drawn()
        self.train(np.concatenate([x, xe]), np.r_[labels, ye])
        self.exemplars.add(x, labels)
        self.refresh()

    def drawn(self) -> tuple[FloatArray, IntArray]:
        """``exemplar_replay`` exemplars drawn at random (with replacement) for this call."""
        ex = self.exemplars
        if not len(ex.y) or not self.exemplar_replay:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64)
        rng = np.random.default_rng([self.sgd.seed, self.calls, 1])
        rows = rng.integers(len(ex.y), size=self.exemplar_replay)
        return ex.x[rows], ex.y[rows]

    def train(self, x: FloatArray, labels: IntArray) -> None:
        """SGD on the summed sigmoid cross-entropy with distillation targets."""
        old = {k: v.astype(np.float64) for k, v in self.old.params.items()}
        old_w, old_b = out_name(old) if old else ("", "")

        def direction(
            work: Params, xb: FloatArray, yb: IntArray, cols: IntArray, idx: IntArray
        ) -> Params:
            target = np.zeros((len(yb), len(cols)))
            target[np.arange(len(yb)), yb] = 1.0
            known = cols[self.old_known[cols]]
            if len(known):
                then = {**old, old_w: old[old_w][known], old_b: old[old_b][known]}
                target[:, self.old_known[cols]] = sigmoid(forward(then, xb)[0])
            logits, cache = forward(work, xb)
            g: FloatArray = (sigmoid(logits) - target) / len(yb)  # type: ignore[assignment]
            return backward(work, cache, g)

        self.descend(x, labels, direction)

    def refresh(self) -> None:
        """The class prototypes from the exemplars (after they or the head change)."""
        self.prototypes, self.has = self.exemplars.means(len(self.counts), self.features)

    def features(self, x: FloatArray) -> Float64Array:
        """What the nearest-mean classifier compares: the head's last hidden layer (the
        paper's feature extractor, trained with it), or the latent with no hidden layer."""
        params = self.net.params
        h = np.asarray(x, dtype=np.float64)
        for i in range(len(params) // 2 - 1):
            h = np.maximum(h @ params[f"w{i}"].T.astype(np.float64) + params[f"b{i}"], 0.0)
        return h

    # -- prediction -------------------------------------------------------------------
    def distances(self, z: FloatArray) -> Float64Array:
        """Distance of each normalised latent to each class prototype ``(N, n_classes)``."""
        x = normalize(self.features(check_latents(z, self.dim)))
        if not self.dim:
            return np.zeros((len(x), len(self.counts)))
        p = self.prototypes
        d = np.sum(x**2, axis=1, keepdims=True) - 2.0 * x @ p.T + np.sum(p**2, axis=1)[None, :]
        return np.asarray(np.sqrt(np.maximum(d, 0.0)), dtype=np.float64)

    def logits_many(self, z: FloatArray) -> Float64Array:
        if self.classifier == "head":
            return super().logits_many(z)
        return masked_logits(-self.distances(z) / self.temperature, self.has)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """Distance to the nearest class prototype (``inf`` before any exemplar)."""
        d = masked_logits(-self.distances(z), self.has)
        return np.asarray(-d.max(axis=1, initial=-np.inf), dtype=np.float64)

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        trained = self.trained if self.classifier == "head" else self.has
        return masked_softmax(self.logits_many(z), trained)

    def nbytes(self) -> int:
        """Bytes of the exemplar memory (what stands in for a replay store)."""
        return self.exemplars.nbytes()

    def state_dict(self) -> State:
        old_w, old_b, old_layers = split_state(self.old, len(self.counts))
        return {
            **super().state_dict(),
            "old_w": old_w,
            "old_b": old_b,
            "old_known": self.old_known.copy(),
            **({"old_layers": old_layers} if old_layers else {}),
            "exemplars": self.exemplars.state_dict(),
        }

    def load_state_dict(self, state: State) -> None:
        super().load_state_dict(state)
        layers = state.get("old_layers", {})
        self.old = joined(self.net, len(self.counts), state["old_w"], state["old_b"], layers)
        self.old_known = np.array(state["old_known"], dtype=bool)
        self.exemplars.load_state_dict(state["exemplars"])
        self.refresh()
