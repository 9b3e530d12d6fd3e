"""The terms'-space precision of streaming LDA: its drift correction stays within the error
it states, also after rows that bring a small eigenvalue into the Gram matrix."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl.strategies.cholesky import precision
from edgecl.strategies.lda_rows import RowPrecision


def used_and_exact(kept: RowPrecision, gamma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """``γ (S + γ I)⁻¹`` as the kept form computes it at ``γ`` and exactly, and the stated
    relative error."""
    r, dim = kept.r, kept.d.shape[1]
    rows = kept.d[:r]
    delta, err = kept.drift(gamma)
    m = np.linalg.inv(rows @ rows.T + kept.gamma * np.eye(r))  # what bordering keeps
    used = np.eye(dim) - rows.T @ (m - delta * m @ m) @ rows
    exact = gamma * np.linalg.inv(rows.T @ rows + gamma * np.eye(dim))
    return used, exact, err


@pytest.mark.parametrize("one_by_one", [False, True])
def test_row_precision_states_its_error_after_rows_that_shrink_the_gram_spectrum(
    one_by_one: bool,
) -> None:
    """Rows far apart give a Gram matrix with large eigenvalues (a small stated error for a
    given drift); near-duplicates of earlier rows then add eigenvalues near ``γ₀``, where
    the correction errs most: the stated error must grow to cover them (added as one batch,
    or one sample at a time as ``learn_one`` does)."""
    rng = np.random.default_rng(0)
    dim, gamma0 = 120, 0.05
    rows = 3.0 * rng.normal(size=(40, dim))
    means = np.zeros((6, dim))  # one class per new row, each with its mean at 0 so far
    kept = RowPrecision(rows, rows @ rows.T, means)
    kept.refactor(gamma0, precision)
    dups = rows[:6] + 0.03 * rng.normal(size=(6, dim))  # G gains eigenvalues about 0.05
    before = kept.drift(1.15 * gamma0)[1]
    labels, counts = np.arange(6), np.ones(6, dtype=np.int64)
    for part in [slice(j, j + 1) for j in range(6)] if one_by_one else [slice(0, 6)]:
        x = dups[part]  # deviations from the class means at 0: the rows themselves
        kept.add(x, np.ones(len(x)), labels[part], counts, means, kept.project(x))
    for gamma in (1.05 * gamma0, 1.15 * gamma0, 0.9 * gamma0):
        used, exact, err = used_and_exact(kept, gamma)
        ratio = np.linalg.eigvals(np.linalg.solve(exact, used)).real
        # 0.1% of slack: this check's own rounding (G + γ₀ I has condition number 1e5 here)
        assert np.all(np.abs(ratio - 1.0) <= 1.001 * err + 1e-8), (gamma, err)
    assert kept.drift(1.15 * gamma0)[1] > 10 * before  # the stated error grew with them
