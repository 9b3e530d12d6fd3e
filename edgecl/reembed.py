"""Moving a learner to another backbone: embed its raw-input memory again, train a new head.

Latents from one backbone mean nothing to another (a rebuilt model, another cut, another
network), so a learner's head and any latent memory are lost when the backbone changes. A
store that keeps raw inputs (``encoding="lz4"``) survives it: :func:`reembed` embeds every
held input through the new backbone and trains a fresh head of the same strategy on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecl.learner import Learner
from edgecl.protocols import Backbone, Retrainable, Strategy
from edgecl.replay import holds_inputs
from edgecl.types import State


def reembed(state: State, backbone: Backbone, *, epochs: int = 1, batch_size: int = 32) -> Learner:
    """A learner on ``backbone`` built from ``state`` (a :meth:`Learner.state_dict`).

    The store's raw inputs are embedded through ``backbone`` and a fresh head of the same
    strategy and options learns them: retrained from memory where the strategy can (gdumb),
    else in shuffled minibatches of ``batch_size`` for ``epochs`` passes. Labels, class
    counts, the sample count and the prequential history carry over; ``model_version``
    goes up by one. The new head knows only what the memory holds.

    >>> from edgecl import replay, strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> old = Learner(IdentityBackbone(2), strategies.create("ncm"),
    ...               replay.create("reservoir", max_bytes=10_000, encoding="lz4"))
    >>> old.learn_many(np.array([[0, 200], [200, 0]], np.uint8), ["up", "right"])
    >>> new = reembed(old.state_dict(), IdentityBackbone(2))
    >>> new.predict_one(np.array([10, 190], np.uint8)), new.model_version
    ('up', 2)
    """
    from edgecl import replay, strategies

    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    saved = state["store"]
    if saved is None:
        raise ValueError("the learner has no replay store, so there is nothing to re-embed")
    store = replay.create(saved["name"], **saved["options"])
    if not holds_inputs(store):
        raise ValueError(
            f"the {saved['name']!r} store holds latents of the old backbone, not raw inputs "
            "(encoding lz4), so they cannot be embedded again"
        )
    store.load_state_dict(saved["state"])
    spec = state["strategy"]
    strategy = strategies.create(spec["name"], **spec["options"])
    learner = Learner(backbone, strategy, store, seed=int(state["seed"]))
    learner.load_bookkeeping(state)
    if len(learner.labels):
        strategy.add_classes(len(learner.labels))
    if len(store) and isinstance(strategy, Retrainable):
        z, y = learner.memory_latents()
        learner.swap_head(strategy.retrain(z, y, lambda _fraction: True))
        return learner
    if len(store):
        z, y = learner.memory_latents()
        _train(strategy, z, y, epochs, batch_size, np.random.default_rng(learner.seed))
    learner.model_version += 1
    return learner


def _train(
    strategy: Strategy,
    z: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    epochs: int,
    size: int,
    rng: np.random.Generator,
) -> None:
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), size):
            rows = order[start : start + size]
            strategy.learn_many(z[rows], y[rows])
