"""The one-triangle symmetric product slda's learn_one uses."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from edgecl.strategies import symv
from edgecl.strategies.lda_update import SYMV_ROWS, KeptPrecision, symv_rows


@pytest.mark.parametrize("n", [1, 2, 37, 1280])
def test_sym_apply_equals_the_general_product(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n))
    p = a + a.T
    x = rng.standard_normal(2 * n)[::2]  # strided: the product must not read it as dense
    np.testing.assert_allclose(symv.sym_apply(p, x), p @ x, rtol=1e-12, atol=1e-10)


def test_sym_apply_reads_one_triangle_only_when_bound() -> None:
    """With the symmetric product bound, the lower triangle is never read: a matrix whose
    lower triangle is garbage gives the symmetric answer."""
    if not symv.available():
        pytest.skip("no symmetric product in this NumPy's BLAS")
    rng = np.random.default_rng(1)
    a = rng.standard_normal((50, 50))
    p = a + a.T
    garbage = np.triu(p) + np.tril(np.full_like(p, 1e6), -1)
    x = rng.standard_normal(50)
    np.testing.assert_allclose(symv.sym_apply(garbage, x), p @ x, rtol=1e-12, atol=1e-10)


def test_other_inputs_take_the_general_product() -> None:
    a = np.arange(9.0).reshape(3, 3)
    p = (a + a.T).astype(np.float32)
    np.testing.assert_allclose(symv.sym_apply(p, np.ones(3)), p @ np.ones(3))
    f = np.asfortranarray(np.arange(16.0).reshape(4, 4) + np.arange(16.0).reshape(4, 4).T)
    np.testing.assert_allclose(symv.sym_apply(f, np.ones(4)), f @ np.ones(4))


def test_numpy_wheels_openblas_is_found() -> None:
    """NumPy's wheels carry OpenBLAS in numpy.libs; there the fast path must be bound."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    if not glob.glob(os.path.join(libs, "*openblas*")):
        pytest.skip("this NumPy was not installed from a wheel carrying OpenBLAS")
    assert symv.available()


@pytest.mark.parametrize("m", [1, 2, SYMV_ROWS])
def test_slda_applies_its_precision_to_a_few_rows_one_triangle_each(m: int) -> None:
    """Up to SYMV_ROWS inputs, the kept precision's product reads one triangle per row: a
    lower triangle of garbage changes nothing, and the rank-one terms not folded yet
    still correct it."""
    if not symv.available():
        pytest.skip("no symmetric product in this NumPy's BLAS")
    rng = np.random.default_rng(m)
    a = rng.standard_normal((60, 60))
    p = a @ a.T / 60 + np.eye(60)
    garbage = np.triu(p) + np.tril(np.full_like(p, 1e6), -1)
    kept, exact = KeptPrecision(garbage, 1.0, np.zeros((1, 60))), p.copy()
    d = rng.standard_normal((3, 60))
    kept.update(d, d @ p, np.full(3, 0.5))
    for row in d:  # the same terms, Sherman-Morrison on the whole matrix
        u = exact @ row
        exact -= 0.5 * np.outer(u, u) / (1.0 + 0.5 * row @ u)
    x = rng.standard_normal((m, 60))
    np.testing.assert_allclose(kept.apply(x), x @ exact, rtol=1e-10, atol=1e-10)


def test_the_rows_taken_one_triangle_each_follow_the_cpu() -> None:
    """More rows on AVX2-only x86, where OpenBLAS's thin products are slow; 3 elsewhere."""
    assert symv_rows(frozenset({"avx2", "fma"})) == 6
    assert symv_rows(frozenset({"avx2", "fma", "avx512f", "avx512bw"})) == 3
    assert symv_rows(frozenset({"asimd", "asimddp"})) == 3
    assert symv_rows(frozenset()) == 3
