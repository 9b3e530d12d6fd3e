"""Concurrent embeds run as shared backbone batches, predictions ahead of learning.

Every ``/predict`` and ``/learn`` request embeds its own few images; on a small CPU the
backbone is the cost of both. Callers hand their prepared inputs to :class:`EmbedBatcher`
from worker threads; ``lanes`` threads run the backbone. A lone input runs at once on an
idle lane's turn, in its caller's thread (no timer, no hand-off), a large one on every idle
lane (each runs its share); inputs that arrive while every lane is busy have waited
anyway, so the next free lane runs them together, as Triton's dynamic batcher does. A
prediction is answered in one backbone run or two, so it goes first: learning only needs to be
acknowledged a few milliseconds later, and its inputs run in small chunks between
predictions (at most ``learn_chunk`` images while predictions come, so a prediction
waits for one chunk at most), and with more than one lane learning then keeps off one of
them, so a prediction that comes finds a lane free; unless the oldest learn input has
waited ``learn_lag_ms`` with no lane taking any of it, which bounds how long predictions
can hold learning back. Without predictions, learning runs in batches of up to
``max_batch`` on every lane.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecl.types import FloatArray

log = logging.getLogger("edgecl.embed")

Embed = Callable[[np.ndarray[Any, Any]], FloatArray]


@dataclass(eq=False)
class _Item:
    """One caller's inputs; lanes fill ``out`` chunk by chunk (``taken`` rows handed out)."""

    x: np.ndarray[Any, Any]
    queued: float = field(default_factory=time.monotonic)
    moved: float = field(init=False)  # when a lane last took rows of it (else: queued)
    future: Future[FloatArray] = field(default_factory=Future)
    out: FloatArray | None = None
    taken: int = 0
    done: int = 0

    def __post_init__(self) -> None:
        self.moved = self.queued

    @property
    def key(self) -> tuple[Any, ...]:
        return self.x.shape[1:], self.x.dtype.str


_Part = tuple[_Item, int, int]  # an item's rows [start, stop) in one backbone run


class EmbedBatcher:
    """Runs concurrent :meth:`embed` calls as backbone batches on ``lanes`` threads.

    ``urgent`` inputs (predictions) run first, a lane taking its share of those waiting
    (1/``lanes`` of their rows, at most ``max_batch``); the others (learning) run when no
    urgent input waits, or when the oldest has waited ``learn_lag_ms`` untouched: in chunks
    of at most ``learn_chunk`` rows while urgent inputs keep coming (one came in the last
    ``quiet_s``), on all lanes but one, else a lane's share as for predictions. A batch that
    fails is run again one caller at a time, so a bad input fails only its own request.

    >>> calls = []
    >>> def embed(x):
    ...     calls.append(len(x))
    ...     return x.astype(np.float32) * 2
    >>> batcher = EmbedBatcher(embed)
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(4) as pool:
    ...     outs = list(pool.map(batcher.embed, [np.full((1, 2), i) for i in range(4)]))
    >>> [o.tolist() for o in outs], sum(calls)
    ([[[0.0, 0.0]], [[2.0, 2.0]], [[4.0, 4.0]], [[6.0, 6.0]]], 4)
    >>> batcher.embed(np.ones((3, 2)), urgent=False).shape, calls[-3:]  # after predictions
    ((3, 2), [1, 1, 1])
    >>> batcher.close()
    """

    def __init__(
        self,
        embed: Embed,
        *,
        lanes: int = 1,
        max_batch: int = 32,
        learn_chunk: int = 1,
        learn_lag_ms: float = 50.0,
        quiet_s: float = 0.5,
    ) -> None:
        if lanes < 1 or max_batch < 1 or learn_chunk < 1 or learn_lag_ms < 0:
            raise ValueError("lanes, max_batch and learn_chunk must be >= 1, learn_lag_ms >= 0")
        self._embed = embed
        self.max_batch, self.learn_chunk = max_batch, learn_chunk
        self.learn_lag_s, self.quiet_s = learn_lag_ms / 1000.0, quiet_s
        self.batches = self.samples = 0  # backbone runs and the samples they held
        self._cond = threading.Condition()
        self._urgent: deque[_Item] = deque()
        self._learn: deque[_Item] = deque()
        self._closed = False
        self._last_urgent = -float("inf")
        self._running = 0  # backbone runs under way, on lanes or in callers' threads
        self._learning = 0  # of which learning runs
        self.lanes = lanes
        self._threads = [
            threading.Thread(target=self._run, name=f"edgecl-embed-{i}", daemon=True)
            for i in range(lanes)
        ]
        for thread in self._threads:
            thread.start()

    def embed(self, x: np.ndarray[Any, Any], urgent: bool = True) -> FloatArray:
        """Latents of ``x`` (a batch of prepared inputs), computed with whatever else is
        waiting; raises what the backbone raised for these inputs."""
        if len(x) == 0:
            return self._embed(x)
        item = _Item(x)
        with self._cond:
            if self._closed:  # closed: run alone
                return self._embed(x)
            if urgent:
                self._last_urgent = item.queued
            # A lone input an idle lane would run at once runs here, on that lane's turn:
            # no wake-up of the lane's thread and wait for it.
            here = len(x) == 1 and self._turn(urgent) and not (self._urgent or self._learn)
            if here:
                self._running += 1
                self._learning += not urgent
            else:
                (self._urgent if urgent else self._learn).append(item)
                self._cond.notify()
        return self._run_here(x, urgent) if here else item.future.result()

    def _run_here(self, x: np.ndarray[Any, Any], urgent: bool) -> FloatArray:
        """``x`` embedded in the caller's thread, on a lane's turn it took."""
        out = None
        try:
            out = self._embed(x)
            return out
        finally:
            with self._cond:
                self._running -= 1
                self._learning -= not urgent
                if out is not None:
                    self.batches += 1
                    self.samples += len(out)
                if self._urgent or self._learn:
                    self._cond.notify()  # the turn given back

    def waiting(self) -> int:
        """Inputs queued that no lane has taken whole yet."""
        with self._cond:
            return len(self._urgent) + len(self._learn)

    def close(self) -> None:
        """Finish what is queued and stop the lanes; later calls embed directly."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    # -- the lanes --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._runnable()):
                    self._cond.wait()
                chosen = self._next()
                if chosen is not None:
                    self._running += 1
                    self._learning += chosen[1]
                if self._urgent or self._learn:
                    self._cond.notify()  # what this lane left is another lane's share
            if chosen is None:
                return
            parts, learning = chosen
            try:
                self._run_parts(parts)
            finally:
                with self._cond:
                    self._running -= 1
                    self._learning -= learning
                    if self._urgent or self._learn:
                        self._cond.notify()

    def _turn(self, urgent: bool = True) -> bool:
        """Whether a lane may run now (the lock held): fewer than ``lanes`` runs, the
        callers' included, and for learning :meth:`_learning_may_run`."""
        return self._running < self.lanes and (urgent or self._learning_may_run())

    def _learning_may_run(self) -> bool:
        """Learning may take a lane: with one lane, without predictions in the last
        ``quiet_s``, or when closing; else on all lanes but one (a prediction that comes
        finds that one free), unless the oldest learn input is lagging."""
        now = time.monotonic()
        if self.lanes == 1 or self._closed or now - self._last_urgent >= self.quiet_s:
            return True
        if self._learning < self.lanes - 1:
            return True
        return bool(self._learn) and self._lagging(now)

    def _lagging(self, now: float) -> bool:
        """Whether the oldest learn input has waited ``learn_lag_ms`` without a lane taking
        any of its rows: predictions held it back that long (the lock held)."""
        item = self._learn[0]
        return now - item.moved > self.learn_lag_s

    def _runnable(self) -> bool:
        """Whether a lane has something it may run now (the lock held)."""
        return self._turn() and bool(self._urgent or self._learn and self._learning_may_run())

    def _next(self) -> tuple[list[_Part], bool] | None:
        """What the lane runs next and whether it is learning (the lock held); None once
        closed and drained."""
        learn, urgent, now = self._learn, self._urgent, time.monotonic()
        if urgent and not (learn and self._lagging(now)):
            return self._gather(urgent, self._share(urgent)), False
        if learn and self._learning_may_run():
            busy = now - self._last_urgent < self.quiet_s
            return self._gather(learn, self.learn_chunk if busy else self._share(learn)), True
        return None

    def _share(self, queue: deque[_Item]) -> int:
        """Rows a lane takes from ``queue``: its share of them all, so that one large
        request runs on every lane at once instead of one lane's cores, at most
        ``max_batch``."""
        rows = sum(len(item.x) - item.taken for item in queue)
        return min(self.max_batch, max(1, -(-rows // self.lanes)))

    @staticmethod
    def _gather(queue: deque[_Item], limit: int) -> list[_Part]:
        """Up to ``limit`` rows from the front of ``queue``, of the first item's shape."""
        parts: list[_Part] = []
        rows, key, now = 0, queue[0].key, time.monotonic()
        while queue and rows < limit and queue[0].key == key:
            item = queue[0]
            take = min(limit - rows, len(item.x) - item.taken)
            parts.append((item, item.taken, item.taken + take))
            item.taken += take
            item.moved = now
            rows += take
            if item.taken == len(item.x):
                queue.popleft()
        return parts

    def _run_parts(self, parts: list[_Part]) -> None:
        live = [p for p in parts if not p[0].future.done()]  # an earlier chunk failed
        if not live:
            return
        try:
            out = self._embed(np.concatenate([item.x[a:b] for item, a, b in live]))
        except Exception as exc:
            if len(live) > 1:  # find the bad input: each caller alone
                for part in live:
                    self._run_parts([part])
                return
            self._fail(live[0][0], exc)
            return
        with self._cond:
            self.batches += 1
            self.samples += len(out)
        start = 0
        for item, a, b in live:
            self._fill(item, a, out[start : start + b - a])
            start += b - a

    def _fill(self, item: _Item, a: int, rows: FloatArray) -> None:
        with self._cond:
            if item.out is None:
                item.out = np.empty((len(item.x), *rows.shape[1:]), rows.dtype)
            item.out[a : a + len(rows)] = rows
            item.done += len(rows)
            if item.done == len(item.x) and not item.future.done():
                item.future.set_result(item.out)

    def _fail(self, item: _Item, exc: Exception) -> None:
        with self._cond:
            for queue in (self._urgent, self._learn):
                if item in queue:
                    queue.remove(item)  # its other chunks need not run
            if not item.future.done():
                item.future.set_exception(exc)
