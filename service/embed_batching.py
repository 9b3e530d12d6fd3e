"""Concurrent embeds run as one backbone batch, as Triton's dynamic batcher does.

Every ``/predict`` and ``/learn`` request embeds its own few images; on a small CPU one
backbone run of eight images costs far less than eight runs of one. Callers hand their
prepared inputs to :class:`EmbedBatcher` from worker threads; one thread runs the backbone
on whatever arrived together and hands each caller its rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecl.types import FloatArray
from service.batching import MicroBatchQueue
from service.errors import NotAcceptingError

log = logging.getLogger("edgecl.embed")

Embed = Callable[[np.ndarray[Any, Any]], FloatArray]


@dataclass
class _Item:
    x: np.ndarray[Any, Any]
    future: Future[FloatArray] = field(default_factory=Future)


def _rows(item: _Item) -> int:
    return len(item.x)


class EmbedBatcher:
    """Gathers concurrent :meth:`embed` calls into backbone batches of up to ``max_batch``
    samples.

    The first input waits at most ``wait_ms`` for company; inputs that arrive while the
    backbone is busy go into the next batch without waiting, so a lone request is never
    delayed by more than ``wait_ms`` and a loaded daemon runs full batches. Inputs of
    different shapes in one gathering run as separate batches. A batch that fails is run
    again one caller at a time, so a bad input fails only its own request.

    >>> calls = []
    >>> def embed(x):
    ...     calls.append(len(x))
    ...     return x.astype(np.float32) * 2
    >>> batcher = EmbedBatcher(embed, wait_ms=50)
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(4) as pool:
    ...     outs = list(pool.map(batcher.embed, [np.full((1, 2), i) for i in range(4)]))
    >>> [o.tolist() for o in outs], sum(calls), len(calls) < 4
    ([[[0.0, 0.0]], [[2.0, 2.0]], [[4.0, 4.0]], [[6.0, 6.0]]], 4, True)
    >>> batcher.close()
    """

    def __init__(self, embed: Embed, *, wait_ms: float = 2.0, max_batch: int = 32) -> None:
        if wait_ms < 0 or max_batch < 1:
            raise ValueError("wait_ms must be >= 0 and max_batch >= 1")
        self._embed = embed
        self.batches = self.samples = 0  # backbone runs and the samples they held
        # Unbounded: each caller waits for its own item, so threads bound what is queued.
        self._queue = MicroBatchQueue[_Item](0, max_batch, wait_ms / 1000.0, _rows)
        self._queue.open()
        self._thread = threading.Thread(target=self._run, name="edgecl-embed", daemon=True)
        self._thread.start()

    def embed(self, x: np.ndarray[Any, Any]) -> FloatArray:
        """Latents of ``x`` (a batch of prepared inputs), computed with whatever else is
        waiting; raises what the backbone raised for these inputs."""
        item = _Item(x)
        try:
            self._queue.put(item, bounded=False)
        except NotAcceptingError:  # closed: run alone
            return self._embed(x)
        return item.future.result()

    def close(self) -> None:
        """Finish what is queued and stop the thread; later calls embed directly."""
        self._queue.close()
        self._thread.join()

    def _run(self) -> None:
        while (items := self._queue.take()) is not None:
            groups: dict[tuple[Any, ...], list[_Item]] = {}
            for item in items:
                groups.setdefault((item.x.shape[1:], item.x.dtype.str), []).append(item)
            for group in groups.values():
                self._run_group(group)

    def _run_group(self, group: list[_Item]) -> None:
        try:
            out = self._embed(np.concatenate([item.x for item in group]))
        except Exception as exc:
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            for item in group:  # find the bad input: each caller alone
                self._run_group([item])
            return
        self.batches += 1
        self.samples += len(out)
        start = 0
        for item in group:
            item.future.set_result(out[start : start + len(item.x)])
            start += len(item.x)
