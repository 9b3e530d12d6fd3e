"""The explicit precision slda keeps: rank-one terms, folded into the matrix in a thread."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest

from edgecl.strategies import lda_update
from edgecl.strategies.lda_update import FOLD_ROWS, FOLD_STEPS, KeptPrecision


def terms(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)), rng.uniform(0.2, 1.0, n)


def grown(kept: KeptPrecision, d: np.ndarray, w: np.ndarray) -> None:
    """One term at a time, as learn_one adds them."""
    for row, weight in zip(d, w, strict=True):
        kept.update(row[None], kept.apply(row[None]), np.array([weight]))


@pytest.mark.parametrize("threads", [True, False])
def test_the_precision_is_exact_at_every_step_through_two_folds(threads: bool) -> None:
    """Every step's ``P`` is ``(S + γ I)⁻¹`` of the terms so far; each fold is taken in
    :data:`FOLD_STEPS` terms after the :data:`FOLD_ROWS` it folds."""
    dim, gamma = 40, 2.0
    d, w = terms(2 * FOLD_ROWS + 2 * FOLD_STEPS + 5, dim, seed=3)
    kept = KeptPrecision(np.eye(dim) / gamma, gamma, np.zeros((2, dim)), threads)
    scatter = np.zeros((dim, dim))
    bases = [kept.base]
    for i, (row, weight) in enumerate(zip(d, w, strict=True)):
        grown(kept, d[i : i + 1], w[i : i + 1])
        scatter += weight * np.outer(row, row)
        exact = np.linalg.inv(scatter + gamma * np.eye(dim))
        np.testing.assert_allclose(kept.apply(np.eye(dim)), exact, rtol=1e-9, atol=1e-12)
        if kept.base is not bases[-1]:
            bases.append(kept.base)
            assert i + 1 == (len(bases) - 1) * FOLD_ROWS + FOLD_STEPS, i
            assert kept.k == FOLD_STEPS  # the terms that came while it folded
    assert len(bases) == 3


def test_a_fold_in_a_thread_gives_the_same_precision_to_the_bit() -> None:
    """Where the fold runs does not change what the head holds: a head and its restored
    copy must agree whether or not either could start a thread."""
    dim = 64
    d, w = terms(3 * FOLD_ROWS, dim, seed=4)
    heads = [KeptPrecision(np.eye(dim), 1.0, np.zeros((1, dim)), t) for t in (True, False)]
    for head in heads:
        grown(head, d, w)
    np.testing.assert_array_equal(heads[0].base, heads[1].base)
    np.testing.assert_array_equal(heads[0].apply(d[:5]), heads[1].apply(d[:5]))


def test_the_fold_runs_beside_learning(monkeypatch: pytest.MonkeyPatch) -> None:
    """With threads, the step that meets the :data:`FOLD_ROWS`-th term does not fold: a
    thread does, and the steps go on until it is taken in."""
    dim = 32
    d, w = terms(FOLD_ROWS + FOLD_STEPS, dim, seed=2)
    kept = KeptPrecision(np.eye(dim), 1.0, np.zeros((1, dim)), threads=True)
    where: list[str] = []
    real = lda_update.folded

    def recorded(*args: np.ndarray) -> np.ndarray:
        where.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(lda_update, "folded", recorded)
    grown(kept, d[:FOLD_ROWS], w[:FOLD_ROWS])
    base = kept.base
    grown(kept, d[FOLD_ROWS:-1], w[FOLD_ROWS:-1])
    assert kept.base is base and kept.k == FOLD_ROWS + FOLD_STEPS - 1
    grown(kept, d[-1:], w[-1:])
    assert kept.base is not base
    assert where == ["slda-fold-p"]


def test_a_copy_taken_while_a_fold_runs_stays_as_it_was() -> None:
    """A shallow copy made between the fold's start and its taking in (a snapshot) must
    predict as it did once the head has taken the fold in and learned on."""
    dim = 33
    d, w = terms(FOLD_ROWS + FOLD_STEPS + 20, dim, seed=5)
    kept = KeptPrecision(np.eye(dim), 1.0, np.zeros((1, dim)), threads=True)
    half = FOLD_ROWS + FOLD_STEPS // 2
    grown(kept, d[:half], w[:half])
    frozen = copy.copy(kept)
    before = frozen.apply(np.eye(dim))
    grown(kept, d[half:], w[half:])
    assert kept.base is not frozen.base
    np.testing.assert_array_equal(frozen.apply(np.eye(dim)), before)
