"""AR1* with latent replay (Lomonaco & Maltoni 2019; Pellegrini et al. 2020), in PyTorch."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from edgecl.heap import release_freed_memory
from edgecl.protocols import Rows
from edgecl.registry import Configurable
from edgecl.replay.drawn import LatentRows
from edgecl.state_views import owned
from edgecl.strategies.cwr_star import background, consolidate
from edgecl.strategies.linear import (
    SGD,
    check_batch,
    check_classes,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_float,
    positive_int,
)
from edgecl.types import FloatArray, IntArray, State

# Latents per forward pass when predicting: block15's expanded activations of 32 latents
# took a prediction pass 65 MiB above the daemon's working set (256: about 290), 8 take 16
# and were no slower: 600 latents in 1.9 s against 3.3 s (one core, shared machine).
PREDICT_CHUNK = 8
# Latents per forward and backward pass in training (``train_chunk``): block15's expanded
# activations of a whole minibatch of 128 are most of AR1's peak memory, and the gradient
# is the same.
TRAIN_CHUNK = 4


def _check_top(top: object) -> str | None:
    if top is None:
        return None
    if not isinstance(top, (str, os.PathLike)) or not Path(top).is_file():
        raise ValueError(f"top must be the manifest.json of a block-cut build or None, got {top!r}")
    return str(top)


class AR1(Configurable):
    """AR1*: CWR* on the output layer, the layers above the latent cut trained with it (with
    an optional Synaptic Intelligence penalty), and latent replay at the cut.

    The backbone runs the frozen layers below an intermediate cut (``edgecl backbone build
    --cut blockK``) and the store holds latents at that cut. This strategy owns the layers
    above it, ``top`` (the build's ``manifest.json``; they are initialised from the
    pretrained weights the build saved), and the output layer. Use it with the
    ``latent_replay`` store (:class:`~edgecl.replay.latent.LatentReplayStore`), whose update
    after each batch is the paper's: ``n / i`` random items of the ``i``-th batch replace
    random held ones.

    What the reference code does (``ar1star_lat_replay.py``, ``utils.py`` and
    ``params.cfg`` of vlomonaco/ar1-pytorch; Avalanche's ``AR1`` has the same defaults):

    - one ``torch.optim.SGD`` over every trainable layer, output included: momentum 0.9,
      weight decay 0.0005, learning rate ``init_lr`` 0.001 on the first batch and
      ``inc_lr`` 5e-5 on every later one (the optimiser is rebuilt once, at the second
      batch, so from then on its velocity carries from batch to batch); 4 epochs per
      batch (``init_train_ep``, ``inc_train_ep``), minibatches of 128 (``mb_size``);
    - replay memory of 1500 latents (``rm_sz``), all of it replayed in every later batch:
      each minibatch holds a fixed share of new samples and of stored latents;
    - CWR* on the output layer (no bias): rows of the batch's classes start from their
      consolidated weights, the others at zero; after the batch the trained rows, minus
      their mean, are averaged into the consolidated ones weighted by ``sqrt(past / cur)``;
    - Synaptic Intelligence (``pre_update``, ``post_update``, ``update_ewc_data``,
      ``compute_ewc_loss``) on every parameter above the cut except batch normalisation's
      and the output layer's: after each step the path ``t += g Δθ`` (``g`` the gradient
      of the loss with its SI term, without the weight decay); after the batch
      ``total -= t / ((θ_end - θ_start)² + 1e-7)``, ``Ω = min(total, 0.001)`` (never
      clamped at zero), ``θ* = θ_end``; penalty ``(λ / 2) Σ Ω (θ - θ*)²``. Its strength
      ``reg_lambda`` is **0** in ``params.cfg`` (and ``ewc_lambda`` 0 in Avalanche): the
      released latent-replay experiments run without SI (with it on, the script would
      fail, as it reads gradients of the frozen layers below the cut, which have none);
    - batch normalisation above the cut replaced with Batch Renormalization: running
      statistics updated at rate 0.01 on the first batch (``init_update_rate``) and 5e-5
      after (``inc_update_rate``); ``r_max`` from 1 and ``d_max`` from 0, each raised by
      4.1e-5 per sample (``inc_step``) up to 1.25 and 0.5 on the first batch and held
      there after; its scale and shift train, with weight decay.

    Here each ``learn_many`` call is one AR1 batch, with that optimiser and SI formula by
    default, and the schedule's structure with one rate throughout (``inc_lr``, below). The
    :class:`~edgecl.Learner` appends ``replay_size`` stored latents to it (``learn_rows``:
    int8 as stored, each minibatch decoded when read, to the same float32); the union is
    shuffled and trained on for ``epochs`` in minibatches of ``batch_size``, so every
    minibatch mixes new and replayed latents in their overall proportion (in expectation;
    the reference fixes that split per minibatch). The velocity starts at zero each batch:
    the reference's carry-over also pushes the output rows of the previous batch's classes
    after CWR* has reset them. Every class present (new or replayed) takes part in CWR*; the
    rest of the reference's fixed-size output layer (``outputs`` rows, the classes outside
    the batch at zero) is emulated exactly by one row, as in
    :class:`~edgecl.strategies.cwr_star.CWRStar` (:func:`~edgecl.strategies.cwr_star.tied_row`),
    and after the batch the rows are consolidated with
    :func:`~edgecl.strategies.cwr_star.consolidate`. SI is
    :class:`~edgecl.strategies.ar1_si.SynapticIntelligence`, off at the reference's
    ``si_lambda`` 0.

    Final accuracy, Split-Fashion-MNIST 5x2, one pass, whole memory replayed, 4 epochs of
    128 (A: pooled latents, ``hidden=256``, 12000 images, batches of 300, memory 1500; B:
    ``block14`` and its pretrained top, 1500 images, batches of 100, memory 200):

    - the reference's ``inc_lr`` 5e-5 keeps the first experience's classes and never
      learns the later ones (A 0.184, B 0.214); ``inc_lr = lr`` 0.001 (A 0.806, B 0.802)
      beats the schedule before (layers above at 0.0001: A 0.768, B 0.678), still below
      ``latent_replay`` (A 0.857, B 0.842). The reference's rates were set for CORe50
      NICv2-391 (its README warns they may not suit other settings). Digits at B (1347
      images): 0.193 at the reference's rates, 0.778 at ``inc_lr`` 0.001, 0.302 with the
      schedule before, ``latent_replay`` 0.704;
    - SI does nothing measurable at the reference's rates (A, λ 1e4 and 1e6: 0.183 and
      0.182 against 0.184): the layers above the cut barely leave ``θ*``. At ``inc_lr``
      0.001 it changes nothing or costs accuracy (A λ 1e4 0.776, 1e6 0.711 against 0.806;
      B 0.806, 0.480 against 0.802): with ``Ω`` capped at 0.001 its pull is below the
      weight decay's unless λ is in the hundreds, and stronger it holds the top where the
      earlier classes left it;
    - Batch Renormalization in place of the frozen batch normalisation (the reference's
      layer and schedule) at B: 0.526 against 0.214 at the reference's rates, where
      neither learns the later classes well, and 0.628 against 0.802 at ``inc_lr`` 0.001;
    - the reference's whole output layer (``outputs`` 10) against one zero row counted once
      (digits' validation split, 10 single-class experiences, block14, 1 epoch): 0.776
      against 0.754; 4 epochs instead of 1: 0.862.

    Batch normalisation in ``top`` is frozen (as pretrained, eval mode) instead of Batch
    Renormalization: both guard BN's statistics from small non-i.i.d. minibatches; freezing
    scored higher above, keeps predictions independent of the batch and lets a minibatch's
    gradient be summed a few latents at a time. ``top=None``: no layers above the cut
    unless ``hidden > 0`` adds a seeded random ``Linear + ReLU6`` (latent streams without
    a build; tests); with neither, AR1 is CWR* with latent replay.

    Hyper-parameters (defaults: the reference code's, named in brackets):

    - ``top`` (None): manifest of a block-cut build, whose layers above the cut train;
    - ``hidden`` (0): width of a random trainable layer when there is no ``top``;
    - ``replay_size`` (1500, ``rm_sz``): latents replayed per batch (the whole memory);
    - ``lr`` (0.001, ``init_lr``): learning rate of every layer on the first batch;
    - ``inc_lr`` (None: ``lr``; the reference's ``inc_lr`` is 5e-5): learning rate of
      every layer on each later batch. The one default that is not the reference's: at
      5e-5 no class after the first experience was ever learned on any stream measured
      (above), so a device would learn nothing new; ``inc_lr=5e-5`` restores it;
    - ``top_lr`` (None): None trains the layers above the cut at ``lr`` / ``inc_lr`` as the
      reference does; a number trains them at that rate on every batch (with ``inc_lr =
      lr`` this is the schedule before the reference's: 0.001, layers above 0.0001);
    - ``momentum`` (0.9, ``momentum``), ``weight_decay`` (0.0005, ``l2``), ``epochs`` (4,
      ``init_train_ep`` / ``inc_train_ep``), ``batch_size`` (128, ``mb_size``): per batch;
    - ``si_lambda`` (0, ``reg_lambda``): SI strength; ``si_xi`` (1e-7, ``eps`` of
      ``update_ewc_data``): damping; ``si_clip`` (0.001, ``clip_to``): largest ``Ω``;
    - ``outputs`` (10): rows of the training-time output layer (grown to the classes known
      if there are more); 0 keeps one zero row counted once (edgecl's rule before);
    - ``threads`` (1): torch threads (set process-wide); ``seed`` (0): ``hidden``'s
      initialisation and minibatch order;
    - ``train_chunk`` (4; not in the reference): latents per forward and backward pass.
      The step is the whole minibatch's either way (up to float rounding); 8 trains
      10-20% faster with a peak about 20 MiB higher (block14, the memory soak's
      figures), which a 1 GB board running the daemon cannot spare.

    >>> s = AR1(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[0, 2]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "ar1"
    #: Rows predicted apart from the others, this many at a time (see ``kept_proba``).
    predict_chunk = PREDICT_CHUNK

    def __init__(
        self,
        top: str | None = None,
        hidden: int = 0,
        replay_size: int = 1500,
        lr: float = 0.001,
        inc_lr: float | None = None,
        top_lr: float | None = None,
        momentum: float = 0.9,
        weight_decay: float = 0.0005,
        epochs: int = 4,
        batch_size: int = 128,
        si_lambda: float = 0.0,
        si_xi: float = 1e-7,
        si_clip: float = 0.001,
        threads: int = 1,
        seed: int = 0,
        outputs: int = 10,
        train_chunk: int = TRAIN_CHUNK,
    ) -> None:
        self.top = _check_top(top)
        self.hidden = positive_int("hidden", hidden, minimum=0)
        if self.top is not None and self.hidden:
            raise ValueError("hidden adds a layer when there is no top; give one or the other")
        self.replay_size = positive_int("replay_size", replay_size, minimum=0)
        self.sgd = SGD(lr, epochs, batch_size, weight_decay, momentum, seed)
        self.inc_lr = None if inc_lr is None else positive_float("inc_lr", inc_lr)
        self.top_lr = None if top_lr is None else positive_float("top_lr", top_lr)
        self.si_lambda = positive_float("si_lambda", si_lambda, allow_zero=True)
        self.si_xi = positive_float("si_xi", si_xi)
        self.si_clip = positive_float("si_clip", si_clip)
        self.threads = positive_int("threads", threads)
        self.outputs = positive_int("outputs", outputs, minimum=0)
        self.train_chunk = positive_int("train_chunk", train_chunk)
        from edgecl.strategies.ar1_top import SynapticIntelligence, TrainableTop

        si = SynapticIntelligence(self.si_lambda, self.si_xi, self.si_clip)
        self.net = TrainableTop(
            self.top, self.hidden, self.threads, self.sgd.seed, self.train_chunk, si
        )
        self.cw = np.zeros((0, 0), dtype=np.float32)
        self.past = np.zeros(0, dtype=np.int64)
        self.calls = 0

    def learning_rates(self) -> tuple[float, float]:
        """The next batch's learning rates: output layer, layers above the cut."""
        lr = self.sgd.lr if self.calls == 0 or self.inc_lr is None else self.inc_lr
        return lr, lr if self.top_lr is None else self.top_lr

    def add_classes(self, n_classes: int) -> None:
        self.cw = grow_rows(self.cw, n_classes)
        self.past = grow_rows(self.past, n_classes)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = check_batch(z, y, len(self.past), self.net.dim)
        self._learn(LatentRows(x), labels)

    def learn_rows(self, rows: Rows, y: IntArray) -> None:
        """Learn what ``learn_many`` would learn of ``rows`` (see
        :class:`~edgecl.protocols.ReadsRows`), reading them a minibatch at a time: the
        replayed ones stay int8 until read."""
        dim = math.prod(rows.item_shape)
        if self.net.dim and dim != self.net.dim:
            raise ValueError(
                f"latent dimension mismatch: this head was trained on {self.net.dim}-d "
                f"latents, got {dim}-d"
            )
        self._learn(rows, check_classes(y, len(rows), len(self.past)))

    def _learn(self, rows: Rows, labels: IntArray) -> None:
        if not len(rows):
            return
        self.net.ensure_built(math.prod(rows.item_shape))
        if self.cw.shape[1] == 0:
            self.cw = np.zeros((len(self.past), self.net.features), dtype=np.float32)
        release_freed_memory()  # what predicting the batch left
        classes, cur = np.unique(labels, return_counts=True)
        tied = background(self.outputs, len(self.past), len(classes))
        tw = self.cw[classes]
        if tied:  # the classes outside the batch: zero rows of the reference's layer
            tw = np.vstack([tw, np.zeros((1, tw.shape[1]), np.float32)])
        lr, top_lr = self.learning_rates()
        tw = self.net.train_batch(
            rows,
            np.searchsorted(classes, labels),
            tw,
            self.sgd,
            lr=lr,
            top_lr=top_lr,
            rng=self.sgd.rng(self.calls),
            tied=tied,
        )
        consolidate(self.cw, self.past, classes, cur, tw[: len(classes)])
        self.calls += 1
        release_freed_memory()  # this batch's activations and gradients

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        x = check_latents(z, self.net.dim)
        trained = self.past > 0
        if self.cw.shape[1] == 0:
            return masked_softmax(np.zeros((len(x), len(self.past))), trained)
        scores = np.concatenate(
            [
                self.net.features_of(x[i : i + PREDICT_CHUNK]) @ self.cw.T
                for i in range(0, len(x), PREDICT_CHUNK)
            ]
        )
        if len(x) > PREDICT_CHUNK:
            release_freed_memory()  # the chunks' activations, before the batch trains
        return masked_softmax(scores, trained)

    def state_dict(self) -> State:
        return {
            "cw": owned(self.cw),
            "past": owned(self.past),
            "calls": self.calls,
            "net": self.net.state_dict(),
        }

    def load_state_dict(self, state: State) -> None:
        self.net.load_state_dict(state["net"])
        self.cw = np.array(state["cw"], dtype=np.float32)
        self.past = np.array(state["past"], dtype=np.int64)
        self.calls = int(state["calls"])
