"""Latent replay: SGD on the head over each batch mixed with latents from the store."""

from __future__ import annotations

from edgecl.strategies.head import SoftmaxHead


class LatentReplay(SoftmaxHead):
    """A linear softmax head trained on each batch plus ``replay_size`` replayed latents.

    The strategy only sets ``replay_size``; the :class:`~edgecl.Learner` draws that many
    latents from its replay store and appends them to every ``learn_many`` batch (with
    no store, or an empty one, this is :class:`~edgecl.strategies.naive.Naive`).
    Pellegrini et al. 2020 replay at an intermediate layer; here the cut is wherever the
    backbone ends, and the head is the part that learns.

    ``hidden`` (default none) puts ReLU layers of those widths before the output layer
    (:class:`~edgecl.strategies.head.SoftmaxHead`), trained by the same SGD.

    >>> import numpy as np
    >>> s = LatentReplay(replay_size=16, lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.replay_size, s.predict_proba_many(np.array([[3, 0]], np.float32)).argmax().item()
    (16, 0)
    """

    name = "latent_replay"

    def __init__(
        self,
        replay_size: int = 32,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 64,
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
            replay_size=replay_size,
        )
