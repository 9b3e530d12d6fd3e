"""ExStream (Hayes, Cahill & Kanan, ICRA 2019): streaming rehearsal from merged prototypes."""

from __future__ import annotations

from edgecl.strategies.linear import SoftmaxHead


class ExStream(SoftmaxHead):
    """ExStream's learner: a linear softmax head rehearsing the store's class prototypes.

    ExStream is two halves. The memory half is the ``exstream`` store
    (:class:`~edgecl.replay.exstream.ExStreamStore`): one fixed-capacity buffer per class,
    and when a class buffer is full its two nearest prototypes (Euclidean) merge into their
    count-weighted mean. This half is the update: every arriving sample is learned together
    with replay from the buffers. Pair it with the ``exstream`` store.

    The paper's reference code stores the sample, then trains the classifier for one epoch
    over the whole buffer after each sample. Here the :class:`~edgecl.Learner` appends
    ``replay_size`` prototypes drawn from the store (all of them when it holds fewer) to the
    incoming batch, and the head makes ``epochs`` passes of minibatch SGD over that union;
    fed one sample at a time (the paper's streaming protocol, and the benchmark's), that
    is the paper's update: one epoch over the new sample plus the buffer.

    Hyper-parameters (defaults):

    - ``replay_size`` (1500): prototypes replayed with each batch; the paper replays the
      whole buffer, so make it at least the number of items the store holds.
    - ``lr`` (0.01), ``batch_size`` (128, the reference code's), ``epochs`` (1),
      ``weight_decay`` (0): plain SGD on softmax cross-entropy. The reference code trains
      an MLP with Adam (lr 2e-3); a linear head on frozen latents with SGD is this
      project's head.
    - ``seed`` (0): minibatch order.

    >>> import numpy as np
    >>> s = ExStream(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[0, 3]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "exstream"

    def __init__(
        self,
        replay_size: int = 1500,
        lr: float = 0.01,
        epochs: int = 1,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            weight_decay=weight_decay,
            seed=seed,
            replay_size=replay_size,
        )
