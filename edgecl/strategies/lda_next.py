"""Streaming LDA's next explicit precision, factorised in a thread while the kept one
still holds the tolerance.

A fresh ``D × D`` factorisation (with the fold of the terms that waited for it) took
135–281 ms at ``D = 1280`` on an AVX2-only core, and every reply of the micro-batch that
met it waited for it. :class:`NextPrecision` starts it early, from ``Σ`` as it was then,
on another thread; the head goes on learning into its kept precision and hands the same
learn calls to the next one, which takes them in once its factorisation is done. When
the kept precision's drift passes the tolerance, the head waits for the next one to take
in the last calls (usually nothing is left) and swaps it in.

What the next precision holds does not depend on the thread's timing: it takes the calls
in groups cut by the calls' sizes alone (:data:`GROUP_ROWS`), so two heads fed the same
calls swap in the same matrix, bit for bit (a live head and one restored from its
checkpoint, for one).
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from edgecl.strategies.lda_jobs import Job, track
from edgecl.strategies.lda_update import KeptPrecision
from edgecl.strategies.linear import Float64Array, grow_rows
from edgecl.types import IntArray

#: Rows per group of learn calls taken in at once: one matrix product of the group with
#: ``P`` (a compute-bound product, not a memory-bound one per row), far cheaper per row
#: than learning them one at a time.
GROUP_ROWS = 32


def folded(
    sigma: Float64Array, sigma_at: int, pending: Sequence[Float64Array], t: int
) -> Float64Array:
    """``Σ`` over ``t`` samples from ``Σ`` over ``sigma_at`` and the rows ``√w d`` since."""
    d = np.concatenate(pending)
    out = d.T @ d  # in place from here: each fresh D×D array costs page faults
    out += sigma_at * sigma
    out /= t
    return np.asarray(out, dtype=np.float64)


def factorised(
    sigma: Float64Array,
    shrinkage: float,
    t: int,
    gamma: float,
    inverse: Callable[[Float64Array], Float64Array],
) -> Float64Array:
    """``(S + γ I)⁻¹ = a ((1 − ε) Σ + a γ I)⁻¹`` with ``S = t Σ``, ``a = (1 − ε)/t``."""
    dim = len(sigma)
    a = (1.0 - shrinkage) / max(t, 1)
    shrunk = (1.0 - shrinkage) * sigma
    shrunk.flat[:: dim + 1] += a * gamma
    base = inverse(shrunk)
    base *= a
    return base


class SigmaFold(Job):
    """``Σ`` at ``t`` samples from ``Σ`` over ``sigma_at`` and the ``pending`` rows since,
    folded in a thread (about 25 ms of BLAS at 1280-d for 512 rows): the head goes on
    learning and takes the result at a sample count of its own choosing, so what it
    holds does not depend on the thread's timing."""

    def __init__(
        self, sigma: Float64Array, sigma_at: int, pending: Sequence[Float64Array], t: int
    ) -> None:
        self.t, self.n_pending, self.sigma_before = t, len(pending), sigma
        super().__init__("slda-fold", folded, sigma, sigma_at, list(pending), t)


class Call(NamedTuple):
    """A learn call's arguments to :meth:`KeptPrecision.learn`, less ``P x``; or a run of
    calls joined into one (the counts before its first, the means after its last)."""

    x: Float64Array
    dev: Float64Array
    w: Float64Array
    labels: IntArray
    counts: IntArray
    after: Float64Array


def joined(calls: Sequence[Call]) -> Call:
    """A run of calls as one batch: the same sequence of rank-one terms."""
    if len(calls) == 1:
        return calls[0]
    first, last = calls[0], calls[-1]
    return Call(
        np.concatenate([c.x for c in calls]),
        np.concatenate([c.dev for c in calls]),
        np.concatenate([c.w for c in calls]),
        np.concatenate([c.labels for c in calls]),
        first.counts,
        last.after,
    )


def take(kept: KeptPrecision, call: Call) -> None:
    n_classes = len(call.after)
    kept.grow(n_classes)
    counts = grow_rows(call.counts, n_classes)
    kept.learn(kept.apply(call.x), call.dev, call.w, call.labels, counts, call.after)


class NextPrecision:
    """A :class:`KeptPrecision` for ``γ₀ = gamma``, from ``Σ`` at ``t`` samples (``sigma``
    over ``sigma_at`` and the ``pending`` rows since), built in a thread and fed the learn
    calls made after ``t``. Every array it is given must be one its owner replaces rather
    than changes (as the head's are). The thread ends when :meth:`finish` or
    :meth:`cancel` is called, or soon after ``owner`` is gone.
    """

    def __init__(
        self,
        owner: object,
        sigma: Float64Array,
        sigma_at: int,
        pending: Sequence[Float64Array],
        t: int,
        means: Float64Array,
        shrinkage: float,
        gamma: float,
        inverse: Callable[[Float64Array], Float64Array],
    ) -> None:
        # Held weakly if it is the owner's method: the thread must not keep its owner alive.
        method = weakref.WeakMethod(inverse) if inspect.ismethod(inverse) else None
        self._inverse = (lambda: inverse) if method is None else method
        self.t, self.n_pending, self.sigma_before = t, len(pending), sigma
        self.sigma: Float64Array | None = None  # Σ at t, once folded
        self.kept: KeptPrecision | None = None  # once every fed call is taken in
        self.error: BaseException | None = None
        self._owner = weakref.ref(owner)
        self._open: list[Call] = []  # calls of the group being gathered
        self._groups: deque[Call] = deque()  # whole groups, joined, not taken in yet
        self._closed = self._cancelled = False
        self._cond = threading.Condition()
        args = (sigma, sigma_at, list(pending), means, shrinkage, gamma)
        self._thread = threading.Thread(
            target=self._run, args=args, name="slda-factorise", daemon=True
        )
        self._thread.start()
        track(self)

    def feed(self, call: Call) -> None:
        """A learn call the kept precision took after ``t``, for this one to take too."""
        with self._cond:
            self._open.append(call)
            if sum(len(c.x) for c in self._open) >= GROUP_ROWS:
                self._groups.append(joined(self._open))
                self._open = []
                self._cond.notify()

    def finish(self) -> tuple[Float64Array, KeptPrecision] | None:
        """Wait until every fed call is taken in: ``Σ`` at ``t`` and the precision, or
        None if building it failed (the caller factorises as before)."""
        with self._cond:
            if self._open:  # the last group, however few its rows
                self._groups.append(joined(self._open))
                self._open = []
            self._closed = True
            self._cond.notify()
        self._thread.join()
        if self.error is not None or self.sigma is None or self.kept is None:
            return None
        return self.sigma, self.kept

    def cancel(self) -> None:
        """Stop at the next step and drop what was built (the head no longer needs it)."""
        with self._cond:
            self._cancelled = True
            self._cond.notify()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (after :meth:`cancel`, within one step)."""
        self._thread.join(timeout)

    def _next_group(self) -> Call | None:
        """The next whole group (waiting for one), or None when done or no longer needed."""
        with self._cond:
            while True:
                if self._cancelled or self._owner() is None:
                    return None
                if self._groups:
                    return self._groups.popleft()
                if self._closed:
                    return None
                self._cond.wait(timeout=1.0)  # now and then: is the owner still there?

    def _run(
        self,
        sigma: Float64Array,
        sigma_at: int,
        pending: list[Float64Array],
        means: Float64Array,
        shrinkage: float,
        gamma: float,
    ) -> None:
        try:
            now = folded(sigma, sigma_at, pending, self.t) if pending else sigma
            del pending
            inverse = self._inverse()
            if self._cancelled or inverse is None:
                return
            base = factorised(now, shrinkage, self.t, gamma, inverse)
            del inverse
            kept = KeptPrecision(base, gamma, means)
            while (group := self._next_group()) is not None:
                take(kept, group)
            if self._closed and not self._cancelled:
                self.sigma, self.kept = now, kept
        except BaseException as exc:  # handed to the head, which factorises as before
            self.error = exc
