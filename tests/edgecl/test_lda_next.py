"""``slda``'s next explicit precision, factorised in a thread: it is swapped in where the
head would have factorised, what it holds does not depend on the thread's timing, a head
and its restored copy go on alike, and no thread outlives its use."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecl import Learner, codec
from edgecl.backbones import IdentityBackbone
from edgecl.strategies import lda_next, lda_rows, slda_forms
from edgecl.strategies.cholesky import precision
from edgecl.strategies.slda import StreamingLDA
from tests.edgecl.test_slda import exact_scores, relu_stream, used_scores

DIM = 48


def factorise_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "slda-factorise"]


class Counted:
    """``precision`` with a count of calls, by the thread they ran on and the size, and
    a delay for the thread's."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.threads: list[str] = []
        self.sizes: list[int] = []

    def __call__(self, a: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        self.sizes.append(len(a))
        if self.delay_s and threading.current_thread().name == "slda-factorise":
            time.sleep(self.delay_s)
        return precision(a)


def head_with(inverse: Counted, **options: Any) -> StreamingLDA:
    s = StreamingLDA(**options)
    s._inverse = inverse  # type: ignore[method-assign]
    s.add_classes(6)
    return s


def step(s: StreamingLDA, z: Any, y: Any, i: int, k: int = 1) -> None:
    """Test-then-train, as the daemon's writer does: predict samples ``i:i+k``, learn them."""
    if i:
        s.predict_proba_many(z[i : i + k])
    s.learn_many(z[i : i + k], y[i : i + k])


def run_script(script: str) -> str:
    """What a fresh interpreter running ``script`` from the repository root prints."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).parents[2],
    ).stdout


def assert_within_bound(s: StreamingLDA, probe: Any) -> None:
    """The trained classes' scores within the tolerance's bound of the exact ones."""
    want, bound = exact_scores(s, probe)
    trained = s.counts > 0
    err = used_scores(s, probe) - want[:, trained]
    assert np.all(np.abs(err) <= bound[:, trained] + 1e-9 * np.abs(want).max())


def test_factorisations_past_the_first_run_in_the_thread_within_tolerance() -> None:
    """Test-then-train one sample at a time: after the first explicit factorisation every
    later one is made in the thread, and every score stays within the stated bound."""
    z, y = relu_stream(3000, DIM, 6, seed=11)
    inverse = Counted()
    s = head_with(inverse, tolerance=1e-6)  # factorisations often
    kept: set[int] = set()
    for i in range(len(z)):
        step(s, z, y, i)
        kept.add(id(s._kept))
        if i % 100 == 99:
            assert_within_bound(s, z[:30])
    assert len(inverse.threads) >= 5 and len(kept) >= 5, inverse.threads
    assert inverse.threads[0] == "MainThread"  # the first: nothing kept to go on with
    assert set(inverse.threads[1:]) == {"slda-factorise"}, inverse.threads


def test_what_the_thread_builds_does_not_depend_on_its_timing() -> None:
    """The same calls, one head's thread slowed down so the head waits for it at each
    swap, the other's not: the same precision, bit for bit, at every step."""
    z, y = relu_stream(2500, DIM, 6, seed=12)
    slowed = Counted(delay_s=0.02)
    fast, slow = head_with(Counted(), tolerance=1e-6), head_with(slowed, tolerance=1e-6)
    rng = np.random.default_rng(0)
    i = 0
    while i < len(z):
        k = int(rng.integers(1, 5))
        for s in (fast, slow):
            step(s, z, y, i, k)
        i += k
        if rng.random() < 0.05:
            np.testing.assert_array_equal(fast.scores_many(z[:20]), slow.scores_many(z[:20]))
    np.testing.assert_array_equal(fast.scores_many(z), slow.scores_many(z))
    np.testing.assert_array_equal(fast.sigma, slow.sigma)
    assert slowed.threads.count("slda-factorise") >= 3


def test_sigma_is_folded_in_a_thread_whose_timing_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The terms waiting for ``Σ`` are folded in their own thread; one head's folds
    slowed down so that it waits for them, the other's not: the same ``Σ`` and scores,
    bit for bit, and never more than twice :data:`SIGMA_ROWS` terms waiting."""
    z, y = relu_stream(4 * slda_forms.SIGMA_ROWS, DIM, 6, seed=19)
    fast, slow = head_with(Counted()), head_with(Counted())
    fold, threads = lda_next.folded, []

    def slowed(sigma: Any, sigma_at: int, pending: Any, t: int) -> Any:
        threads.append(threading.current_thread().name)
        if sigma is slow._sigma:
            time.sleep(0.05)
        return fold(sigma, sigma_at, pending, t)

    monkeypatch.setattr(lda_next, "folded", slowed)
    for i in range(len(z)):
        for s in (fast, slow):
            step(s, z, y, i)
            assert s.n_updates - s._sigma_at < 2 * slda_forms.SIGMA_ROWS
        if i % 97 == 0:
            np.testing.assert_array_equal(fast.scores_many(z[:20]), slow.scores_many(z[:20]))
    assert threads.count("slda-fold") >= 4, threads
    np.testing.assert_array_equal(fast.scores_many(z), slow.scores_many(z))
    np.testing.assert_array_equal(fast.sigma, slow.sigma)


def test_a_head_and_its_restored_copy_go_on_alike_past_later_swaps() -> None:
    z, y = relu_stream(3000, DIM, 6, seed=13)
    # γ grows ten times as fast as by default: factorisations every few hundred samples.
    learner = Learner(IdentityBackbone(DIM), StreamingLDA(shrinkage=1e-3, tolerance=1e-6))
    for i in range(1200):
        learner.learn_one(z[i], int(y[i]))
    restored = Learner.from_state(codec.roundtrip(learner.state_dict()))
    head = restored.strategy
    assert isinstance(head, StreamingLDA) and head._next is not None  # started at once
    for i in range(1200, 3000):  # test-then-train: several factorisations in the thread
        want = learner.predict_proba_many(z[i : i + 1])
        np.testing.assert_array_equal(restored.predict_proba_many(z[i : i + 1]), want)
        for one in (learner, restored):
            one.learn_one(z[i], int(y[i]))
    np.testing.assert_array_equal(restored.predict_proba_many(z), learner.predict_proba_many(z))
    assert head._kept is not None and head._kept.gamma > 1e-3 * 2500  # swapped in since


def test_a_snapshot_starts_no_thread_and_a_dropped_head_leaves_none() -> None:
    z, y = relu_stream(1500, DIM, 6, seed=14)
    s = StreamingLDA(tolerance=1e-6)  # its own method factorises: held weakly
    s.add_classes(6)
    for i in range(1500):
        step(s, z, y, i)
        if s._next is not None and s._kept is not None:
            break
    assert s._next is not None
    frozen = s.snapshot()
    running = len(factorise_threads())
    for i in range(200):  # its drift is where the live head started one
        frozen.predict_proba_many(z[i : i + 1])
    assert frozen._next is None and len(factorise_threads()) <= running
    thread = s._next._thread
    del s, frozen
    gc.collect()
    thread.join(timeout=5.0)
    assert not thread.is_alive()


def test_a_failure_in_the_thread_falls_back_to_factorising_at_the_swap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed: list[str] = []
    real = lda_next.factorised

    def failing_once(*args: Any) -> Any:
        if not failed and threading.current_thread().name == "slda-factorise":
            failed.append("once")
            raise MemoryError("no room for the next precision")
        return real(*args)

    monkeypatch.setattr(lda_next, "factorised", failing_once)
    z, y = relu_stream(2500, DIM, 6, seed=15)
    s = StreamingLDA()
    s.add_classes(6)
    for i in range(len(z)):
        step(s, z, y, i)
    assert failed
    assert_within_bound(s, z[:50])


def test_a_thread_running_when_the_covariance_freezes_ends() -> None:
    """With ``covariance_samples`` ``γ`` stops growing, so no swap would ever come: a
    thread started just before is dropped rather than left taking in every sample."""
    z, y = relu_stream(2000, DIM, 6, seed=16)

    def run(s: StreamingLDA, stop_when_started: bool) -> int:
        for i in range(len(z)):
            step(s, z, y, i)
            if stop_when_started and s._next is not None and i > 600:
                return i
        return len(z)

    started_at = run(head_with(Counted(), tolerance=1e-6), stop_when_started=True)
    slowed = Counted(delay_s=0.05)
    s = head_with(slowed, tolerance=1e-6, covariance_samples=started_at + 6)
    before = set(factorise_threads())
    run(s, stop_when_started=False)
    assert s._next is None and "slda-factorise" in slowed.threads  # started, then dropped
    deadline = time.monotonic() + 5.0
    while set(factorise_threads()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(factorise_threads()) - before
    assert_within_bound(s, z[:50])


def test_without_background_the_step_that_needs_it_factorises() -> None:
    z, y = relu_stream(1500, DIM, 6, seed=17)
    inverse = Counted()
    s = head_with(inverse, tolerance=1e-6, background=False)
    assert s.options()["background"] is False
    for i in range(len(z)):
        step(s, z, y, i)
    s.state_dict()
    assert s._next is None and len(inverse.threads) >= 2
    assert set(inverse.threads) == {"MainThread"}
    with pytest.raises(ValueError, match="background"):
        StreamingLDA(background="yes")  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux's CPU affinity")
def test_on_one_cpu_no_thread_is_started() -> None:
    """Pinned to one CPU the thread would only add its catching up: none is started."""
    script = (
        "import os, threading\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from tests.edgecl.test_lda_next import Counted, head_with, step\n"
        "from tests.edgecl.test_slda import relu_stream\n"
        "z, y = relu_stream(1500, 48, 6, seed=17)\n"
        "inverse = Counted()\n"
        "s = head_with(inverse, tolerance=1e-6)\n"
        "for i in range(len(z)):\n"
        "    step(s, z, y, i)\n"
        "print(sorted(set(inverse.threads)), len(inverse.threads))\n"
    )
    out = run_script(script)
    names, calls = out.rsplit(" ", 1)
    assert names == "['MainThread']" and int(calls) >= 2, out


def test_a_process_exiting_mid_factorisation_waits_for_the_thread() -> None:
    """Exiting while the thread factorises: the thread is stopped and joined before the
    interpreter tears NumPy down (a thread inside LAPACK then crashed about one exit in
    ten at 1280-d), and the process exits cleanly."""
    script = (
        "import atexit, threading\n"
        "def left():\n"  # registered first, so it runs after edgecl's exit hook
        "    names = [t.name for t in threading.enumerate() if t.name == 'slda-factorise']\n"
        "    print('alive at exit:', names, flush=True)\n"
        "atexit.register(left)\n"
        "from tests.edgecl.test_lda_next import Counted, head_with, step\n"
        "from tests.edgecl.test_slda import relu_stream\n"
        "z, y = relu_stream(1500, 48, 6, seed=17)\n"
        "inverse = Counted(delay_s=0.5)\n"
        "s = head_with(inverse, tolerance=1e-6)\n"
        "for i in range(len(z)):\n"
        "    step(s, z, y, i)\n"
        "    if 'slda-factorise' in inverse.threads:\n"
        "        break\n"
        "print('factorising at exit:', 'slda-factorise' in inverse.threads, flush=True)\n"
    )
    out = run_script(script)
    assert "factorising at exit: True" in out and "alive at exit: []" in out, out


def test_the_switch_to_the_explicit_precision_is_made_in_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 192-d the precision is kept in the terms' space up to 144 terms (r×r
    factorisations, in the step), then explicitly: the explicit precision is not built
    from the terms in the step but factorised in the thread, as every later one, and the
    scores stay within the bound throughout."""
    built: list[int] = []
    explicit = lda_rows.RowPrecision.explicit

    def counted(rows: lda_rows.RowPrecision, gamma: float) -> Any:
        built.append(rows.r)
        return explicit(rows, gamma)

    monkeypatch.setattr(lda_rows.RowPrecision, "explicit", counted)
    dim = 192
    z, y = relu_stream(1200, dim, 6, seed=18)
    inverse = Counted()
    s = head_with(inverse)
    forms = set()
    for i in range(len(z)):
        step(s, z, y, i)
        forms.add("rows" if s._rows is not None else "kept" if s._kept is not None else "")
        if i % 50 == 49 and i > 100:
            assert_within_bound(s, z[:30])
    full = [name for name, n in zip(inverse.threads, inverse.sizes, strict=True) if n == dim]
    assert {"rows", "kept"} <= forms and not built
    assert full and set(full) == {"slda-factorise"}, full
