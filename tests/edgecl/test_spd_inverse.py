"""The inverse of a symmetric positive definite matrix by LAPACK (slda's factorisations)."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from edgecl.strategies import spd_inverse
from edgecl.strategies.cholesky import Cholesky, precision


def spd(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((2 * n + 3, n))
    return np.asarray(x.T @ x / len(x) + 1e-3 * np.eye(n))


def bound() -> None:
    if not spd_inverse.available():
        pytest.skip("no LAPACK Cholesky routines in this NumPy's OpenBLAS")


@pytest.mark.parametrize("n", [1, 2, 37, 129, 1280])
def test_inverse_equals_numpys_and_leaves_its_input(n: int) -> None:
    bound()
    a = spd(n, n)
    before = a.copy()
    got = spd_inverse.inverse(a)
    assert got is not None
    np.testing.assert_allclose(got @ a, np.eye(n), atol=1e-8)
    np.testing.assert_allclose(got, np.linalg.inv(a), rtol=1e-8, atol=1e-10)
    assert np.array_equal(got, got.T)  # both triangles filled, exactly symmetric
    assert np.array_equal(a, before)


def test_only_the_upper_triangle_is_read() -> None:
    bound()
    a = spd(50, 3)
    garbage = np.triu(a) + np.tril(np.full_like(a, 1e6), -1)
    got = spd_inverse.inverse(garbage)
    assert got is not None
    np.testing.assert_allclose(got, np.linalg.inv(a), rtol=1e-8, atol=1e-10)


def test_an_indefinite_matrix_gives_none_and_precision_falls_back() -> None:
    bound()
    a = np.diag([2.0, -1.0, 3.0]) + 0.1
    assert spd_inverse.inverse(a) is None
    np.testing.assert_allclose(precision(a), np.linalg.inv(a))


def test_other_shapes_give_none() -> None:
    assert spd_inverse.inverse(np.zeros((0, 0))) is None
    assert spd_inverse.inverse(np.ones((2, 3))) is None


def test_precision_matches_the_numpy_cholesky_path() -> None:
    a = spd(300, 5)
    np.testing.assert_allclose(precision(a), Cholesky(a).inverse(), rtol=1e-9, atol=1e-11)


def test_numpy_wheels_openblas_is_found() -> None:
    """NumPy's wheels carry OpenBLAS with its LAPACK in numpy.libs: the routines bind."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    if not glob.glob(os.path.join(libs, "*openblas*")):
        pytest.skip("this NumPy was not installed from a wheel carrying OpenBLAS")
    assert spd_inverse.available()
