"""Naive fine-tuning: the lower bound every continual strategy should beat."""

from __future__ import annotations

from edgecl.strategies.head import SoftmaxHead


class Naive(SoftmaxHead):
    """Plain SGD of a linear softmax head on each incoming batch only (no replay).

    In a class-incremental stream it forgets earlier classes: the softmax pushes their
    outputs down whenever a batch holds only new classes.

    ``hidden`` (default none) puts ReLU layers of those widths before the output layer
    (:class:`~edgecl.strategies.head.SoftmaxHead`), trained by the same SGD.

    >>> import numpy as np
    >>> s = Naive(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[0, 3]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "naive"

    def __init__(
        self,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
    ) -> None:
        super().__init__(
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            weight_decay=weight_decay,
            seed=seed,
            hidden=hidden,
            replay_size=0,
        )
