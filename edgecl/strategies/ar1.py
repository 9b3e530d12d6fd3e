"""AR1* with latent replay (Lomonaco & Maltoni 2019; Pellegrini et al. 2020), in PyTorch."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.cwr_star import consolidate
from edgecl.strategies.linear import (
    SGD,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_float,
    positive_int,
)
from edgecl.types import FloatArray, IntArray, State

# Latents per forward pass when predicting: block15's expanded activations of 256 latents
# took the daemon's peak RSS from about 380 to 670 MiB; 32 keep it there, and ran 512 latents
# in 0.9 s against 1.6 s on one core.
PREDICT_CHUNK = 32


def _libc() -> Any:
    try:
        lib = ctypes.CDLL(None)  # the symbols already loaded: libc's on Linux
    except OSError:
        return None
    return lib if hasattr(lib, "malloc_trim") else None


_LIBC = _libc()


def release_freed_memory() -> None:
    """Give the heap pages freed since the last call back to the system (glibc's
    ``malloc_trim``; nothing elsewhere): glibc keeps them, so the decoded replay and the
    activations of one batch would stay resident under the next one's."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _check_top(top: object) -> str | None:
    if top is None:
        return None
    if not isinstance(top, (str, os.PathLike)) or not Path(top).is_file():
        raise ValueError(f"top must be the manifest.json of a block-cut build or None, got {top!r}")
    return str(top)


class AR1(Configurable):
    """AR1*: CWR* on the output layer, Synaptic Intelligence on the layers above the latent cut,
    and latent replay at the cut.

    The backbone runs the frozen layers below an intermediate cut (``edgecl backbone build
    --cut blockK``) and the store holds latents at that cut. This strategy owns the layers
    above it, ``top`` (the build's ``manifest.json``; they are initialised from the
    pretrained weights the build saved), and the output layer. Use it with the
    ``latent_replay`` store (:class:`~edgecl.replay.latent.LatentReplayStore`), whose update
    after each batch is the paper's: ``n / i`` random items of the ``i``-th batch replace
    random held ones.

    Each ``learn_many`` call is one AR1 batch. The :class:`~edgecl.Learner` appends
    ``replay_size`` stored latents to it; the union is shuffled and trained on for
    ``epochs`` in minibatches of ``batch_size``, so every minibatch mixes new and replayed
    latents in their overall proportion (in expectation; the reference code fixes that
    split per minibatch). Every class present (new or replayed) takes part in CWR*: its
    temporary weights start from its consolidated ones (zero for a new class), one extra
    zero output stands for all other classes (see :class:`~edgecl.strategies.cwr_star.CWRStar`),
    and after the batch they are consolidated with :func:`~edgecl.strategies.cwr_star.consolidate`.
    The same minibatches train ``top`` with the lower ``top_lr``, plus the Synaptic
    Intelligence penalty ``si_lambda * sum(Ω (θ - θ*)²)``: during the batch each parameter
    accumulates its path integral ``ω += -g Δθ`` (``g`` the gradient of the task loss
    alone); at the end ``Ω += max(ω, 0) / ((θ_end - θ_start)² + si_xi)`` and ``θ* = θ_end``.
    ``Ω`` is clipped at ``1 / (2 si_lambda top_lr)``: beyond that one SGD step on the
    penalty would overshoot ``θ*`` and the quadratic would diverge.

    Batch normalisation in ``top`` is frozen (running statistics and affine parameters as
    pretrained, eval mode): the paper replaces BN with Batch Renormalization because small
    non-i.i.d. minibatches corrupt its statistics; freezing avoids that too, costs nothing,
    and keeps predictions independent of the batch. ``top=None`` means no layers above the
    cut unless ``hidden > 0`` adds one randomly initialised (seeded) ``Linear + ReLU6``
    layer, for latent streams without a build (tests); with neither, AR1 is CWR* with
    latent replay.

    Hyper-parameters (defaults; the reference code's where it has them):

    - ``top`` (None): manifest of a block-cut build, whose layers above the cut train;
    - ``hidden`` (0): width of a random trainable layer when there is no ``top``;
    - ``replay_size`` (1500): latents replayed per batch (the paper: the whole memory);
    - ``lr`` (0.001, the reference code's): output layer learning rate;
    - ``top_lr`` (0.0001): the layers above the cut learn ten times slower;
    - ``momentum`` (0.9), ``weight_decay`` (0.0005): SGD, as the reference code;
    - ``epochs`` (4), ``batch_size`` (128): per batch, as the reference code;
    - ``si_lambda`` (0.1) and ``si_xi`` (0.001): SI strength and damping (Zenke et al.);
    - ``threads`` (1): torch threads (set process-wide when built);
    - ``seed`` (0): initialisation of ``hidden`` and minibatch order.

    >>> s = AR1(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[0, 2]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "ar1"

    def __init__(
        self,
        top: str | None = None,
        hidden: int = 0,
        replay_size: int = 1500,
        lr: float = 0.001,
        top_lr: float = 0.0001,
        momentum: float = 0.9,
        weight_decay: float = 0.0005,
        epochs: int = 4,
        batch_size: int = 128,
        si_lambda: float = 0.1,
        si_xi: float = 0.001,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        self.top = _check_top(top)
        self.hidden = positive_int("hidden", hidden, minimum=0)
        if self.top is not None and self.hidden:
            raise ValueError("hidden adds a layer when there is no top; give one or the other")
        self.replay_size = positive_int("replay_size", replay_size, minimum=0)
        self.sgd = SGD(lr, epochs, batch_size, weight_decay, momentum, seed)
        self.top_lr = positive_float("top_lr", top_lr)
        self.si_lambda = positive_float("si_lambda", si_lambda, allow_zero=True)
        self.si_xi = positive_float("si_xi", si_xi)
        self.threads = positive_int("threads", threads)
        from edgecl.strategies.ar1_top import TrainableTop

        self.net = TrainableTop(self.top, self.hidden, self.threads, self.sgd.seed)
        self.cw = np.zeros((0, 0), dtype=np.float32)
        self.past = np.zeros(0, dtype=np.int64)
        self.calls = 0

    def add_classes(self, n_classes: int) -> None:
        self.cw = grow_rows(self.cw, n_classes)
        self.past = grow_rows(self.past, n_classes)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = check_batch(z, y, len(self.past), self.net.dim)
        if not len(x):
            return
        self.net.ensure_built(x.shape[1])
        if self.cw.shape[1] == 0:
            self.cw = np.zeros((len(self.past), self.net.features), dtype=np.float32)
        release_freed_memory()  # the replay the learner decoded for this batch
        classes, cur = np.unique(labels, return_counts=True)
        tw = np.vstack([self.cw[classes], np.zeros((1, self.cw.shape[1]), np.float32)])
        tw = self.net.train_batch(
            x,
            np.searchsorted(classes, labels),
            tw,
            self.sgd,
            top_lr=self.top_lr,
            si_lambda=self.si_lambda,
            si_xi=self.si_xi,
            rng=self.sgd.rng(self.calls),
        )
        consolidate(self.cw, self.past, classes, cur, tw[:-1])
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
            "cw": self.cw.copy(),
            "past": self.past.copy(),
            "calls": self.calls,
            "net": self.net.state_dict(),
        }

    def load_state_dict(self, state: State) -> None:
        self.net.load_state_dict(state["net"])
        self.cw = np.array(state["cw"], dtype=np.float32)
        self.past = np.array(state["past"], dtype=np.int64)
        self.calls = int(state["calls"])
