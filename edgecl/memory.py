"""What a learner needs for a store that keeps raw inputs instead of latents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecl.protocols import Backbone, MemoryReplay, ReadsRows, ReplayStore, Strategy
from edgecl.replay import holds_inputs
from edgecl.replay.compress import check_batch
from edgecl.replay.drawn import EncodedDraw, LatentRows
from edgecl.task_book import pack, proba, task_aware, unpack
from edgecl.types import FloatArray, IntArray


def prepare(backbone: Backbone, store: ReplayStore | None, x: Any) -> np.ndarray[Any, Any]:
    """``x`` as the store keeps it: uint8, resized as the backbone sees it (its ``prepare``);
    a backbone without one must be given integers in 0..255 already.

    >>> from edgecl.backbones import IdentityBackbone
    >>> prepare(IdentityBackbone(2), None, np.array([[3.0, 250.0]])).tolist()
    [[3, 250]]
    """
    step = getattr(backbone, "prepare", None)
    if callable(step):
        out: np.ndarray[Any, Any] = step(x)
        return out
    return check_inputs(store, x, None)


def check_inputs(store: ReplayStore | None, x: Any, n: int | None) -> np.ndarray[Any, Any]:
    """Prepared inputs as uint8, checked against the store's item shape and ``n`` samples."""
    if x is None:
        raise ValueError(
            f"the {getattr(store, 'name', '')!r} store keeps raw inputs, not latents: "
            "learn inputs (learn_many), or pass the prepared inputs with the latents"
        )
    arr = np.asarray(x)
    if n is not None and len(arr) != n:
        raise ValueError(f"got {n} latents but {len(arr)} inputs")
    values, _ = check_batch(arr, np.zeros(len(arr), np.int64), "lz4", getattr(store, "shape", None))
    return values


def latents(
    embed: Callable[[Any], FloatArray], store: ReplayStore | None, chunk: int = 64
) -> tuple[FloatArray, IntArray]:
    """Every item of ``store`` as a latent with its class index: raw inputs go through
    ``embed``, ``chunk`` at a time (a store of decoded 224x224 images would not fit in
    memory)."""
    if store is None:
        raise ValueError("there is no replay memory")
    chunks = getattr(store, "chunks", None)
    if not holds_inputs(store) or not callable(chunks):
        z, y = store.items()
        return (embed(z.astype(np.uint8)) if holds_inputs(store) else z), unpack(y)[0]
    parts = [(embed(z.astype(np.uint8)), unpack(y)[0]) for z, y in chunks(chunk)]
    if not parts:
        raise ValueError("the replay memory is empty")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def store_first(
    store: ReplayStore | None,
    strategy: Strategy,
    items: Callable[[], Any],
    y: IntArray,
    t: IntArray,
) -> int:
    """How many rows of a batch the strategy trains on beside the replay: all, or none for
    a strategy that ``learns_after_store`` (ExStream, which trains on its buffer after the
    batch is merged into it), whose batch (``items()``) goes into ``store`` now (with tasks
    ``t``)."""
    if store is None or not getattr(strategy, "learns_after_store", False):
        return len(y)
    store.add_many(items(), pack(y, t))
    return 0


def kept_proba(
    strategy: Strategy, z: FloatArray, rows: IntArray | None, t: IntArray | None
) -> FloatArray:
    """Class probabilities (:func:`~edgecl.task_book.proba`) of the rows ``rows`` (sorted
    indices; None: all) of ``z``. A strategy whose ``predict_chunk`` says it predicts each
    run of that many rows apart from the others (AR1) gets the rows that many at a time,
    a view of ``z`` when they are consecutive: the runs it would make of the rows copied
    out, so the same probabilities, without a copy of a micro-batch's latents."""
    chunk = int(getattr(strategy, "predict_chunk", 0))
    if rows is None:
        return proba(strategy, z, t)
    if not chunk or task_aware(strategy) is not None:
        return proba(strategy, z[rows], t)
    parts = []
    for s in range(0, len(rows), chunk):
        run = rows[s : s + chunk]
        together = bool(np.all(np.diff(run) == 1))
        parts.append(strategy.predict_proba_many(z[run[0] : run[-1] + 1] if together else z[run]))
    return np.concatenate(parts)


def train(
    strategy: Strategy,
    store: ReplayStore | None,
    rng: np.random.Generator,
    decode: Callable[[FloatArray], FloatArray],
    z: FloatArray,
    y: IntArray,
    keep: int,
    t: IntArray | None = None,
    rows: IntArray | None = None,
) -> None:
    """Train ``strategy`` on a batch with its replay: ``replay_size`` items drawn from
    ``store`` (through ``decode``) appended to the batch's first ``keep`` rows (see
    :func:`store_first`), or, for a :class:`MemoryReplay` strategy, ``memory_size`` items
    handed over beside them. Draws only from a non-empty store, with ``rng`` (the
    learner's, so a replayed log draws the same items). A :class:`TaskAware` strategy
    learns every row with its task: the batch's ``t``, the replayed items' own. A
    :class:`ReadsRows` strategy gets the same rows with the replay still encoded.
    ``rows``: the rows of ``z`` that are the batch (None: all); a ``ReadsRows`` strategy
    reads them in place, the others get them copied."""
    # hasattr first: a runtime protocol check costs tens of microseconds per call
    if (
        hasattr(strategy, "learn_rows")
        and isinstance(strategy, ReadsRows)
        and task_aware(strategy) is None
    ):
        drawn, yb = None, y[:keep]
        if store is not None and strategy.replay_size > 0 and len(store):
            drawn, kr = draw(store, strategy.replay_size, rng, decode)
            yb = np.r_[yb, unpack(kr)[0]]
        new = LatentRows(z[:keep], drawn) if rows is None else LatentRows(z, drawn, rows[:keep])
        strategy.learn_rows(new, yb)
        return
    if rows is not None:
        z = z[rows]
    if hasattr(strategy, "learn_with_memory") and isinstance(strategy, MemoryReplay):
        zm = np.zeros((0, *z.shape[1:]), dtype=np.float32)
        ym = np.zeros(0, dtype=np.int64)
        if store is not None and strategy.memory_size > 0 and len(store):
            zm, ym = store.sample(strategy.memory_size, rng)
            zm, ym = decode(zm), unpack(ym)[0]
        strategy.learn_with_memory(z[:keep], y[:keep], zm, ym)
        return
    zb, yb = z, y
    tb = np.full(len(y), -1, np.int64) if t is None else t
    if store is not None and strategy.replay_size > 0 and len(store):
        zr, kr = store.sample(strategy.replay_size, rng)
        yr, tr = unpack(kr)
        zb, yb = np.concatenate([z[:keep], decode(zr)]), np.r_[y[:keep], yr]
        tb = np.r_[tb[:keep], tr]
        del zr  # a decoded copy as large as the batch: free it before training
    head = task_aware(strategy)
    if head is None:
        strategy.learn_many(zb, yb)
    else:
        head.learn_tasks(zb, yb, tb)


def draw(
    store: ReplayStore,
    n: int,
    rng: np.random.Generator,
    decode: Callable[[FloatArray], FloatArray],
) -> tuple[EncodedDraw, IntArray]:
    """``n`` items of ``store`` as :meth:`~edgecl.protocols.ReplayStore.sample` draws them
    with ``rng``, kept encoded when the store can hand them so (a built-in store of
    latents), else decoded (through ``decode``: raw inputs are embedded)."""
    encoded = getattr(store, "draw", None)
    if callable(encoded) and not holds_inputs(store):
        out: tuple[EncodedDraw, IntArray] = encoded(n, rng)
        return out
    z, keys = store.sample(n, rng)
    return EncodedDraw(decode(z)), keys
