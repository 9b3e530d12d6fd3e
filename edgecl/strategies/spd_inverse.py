"""``A⁻¹`` for a symmetric positive definite ``A`` by LAPACK's ``dpotrf`` and ``dpotri``.

NumPy has a Cholesky factor but no inverse from one, and ``np.linalg.inv`` (an LU) does
twice the arithmetic. The OpenBLAS of NumPy's wheels exports both routines; bound here
with ctypes (as :mod:`~edgecl.strategies.symv` binds ``dsymv``), a 1280×1280 inverse
took 60 ms against 104 for :class:`~edgecl.strategies.cholesky.Cholesky` in NumPy on an
AVX2-only EPYC. Where they are not found or fail a check on first use,
:func:`inverse` returns None and the caller computes it in NumPy.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecl.strategies.linear import Float64Array
from edgecl.strategies.symv import first_bound

# (dpotrf, dpotri, integer type): NumPy's ILP64 wheel, then 32-bit-integer builds
_SYMBOLS = (
    ("scipy_dpotrf_64_", "scipy_dpotri_64_", ctypes.c_int64),
    ("dpotrf_64_", "dpotri_64_", ctypes.c_int64),
    ("scipy_dpotrf_", "scipy_dpotri_", ctypes.c_int32),
    ("dpotrf_", "dpotri_", ctypes.c_int32),
)
_MIRROR_ROWS = 128  # rows per block when the lower triangle is copied from the upper
_bound: list[Callable[[Float64Array], Float64Array | None] | None] = []


def _bind(path: str) -> Callable[[Float64Array], Float64Array | None] | None:
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for potrf_name, potri_name, integer in _SYMBOLS:
        potrf: Any = getattr(lib, potrf_name, None)
        potri: Any = getattr(lib, potri_name, None)
        if potrf is None or potri is None:
            continue
        ref = ctypes.POINTER(integer)
        for fn in (potrf, potri):
            fn.restype = None
            # uplo, n, a, lda, info, and the length of uplo that Fortran passes unseen
            fn.argtypes = [ctypes.c_char_p, ref, ctypes.c_void_p, ref, ref, ctypes.c_size_t]

        def inverse(
            a: Float64Array, potrf: Any = potrf, potri: Any = potri, integer: Any = integer
        ) -> Float64Array | None:
            out = np.array(a, dtype=np.float64, order="C")  # a copy, overwritten in place
            n, info = integer(len(out)), integer(0)
            # Row-major storage is the column-major transpose: LAPACK's lower triangle is
            # NumPy's upper one (the same numbers, A being symmetric).
            for fn in (potrf, potri):
                fn(b"L", ctypes.byref(n), out.ctypes.data, ctypes.byref(n), ctypes.byref(info), 1)
                if info.value != 0:  # > 0: not positive definite in floating point
                    return None
            return _mirror(out)

        return inverse
    return None


def _mirror(out: Float64Array) -> Float64Array:
    """The lower triangle set from the upper one, by blocks of rows (an index of all
    n²/2 entries takes five times as long)."""
    n, b = len(out), _MIRROR_ROWS
    for i in range(0, n, b):
        j = min(i + b, n)
        block = out[i:j, i:j]
        block[...] = np.triu(block) + np.triu(block, 1).T
        out[j:, i:j] = out[i:j, j:].T
    return out


def _checked() -> Callable[[Float64Array], Float64Array | None] | None:
    """The bound inverse if it matches NumPy's on a small example, else None."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 37))
    a = x.T @ x / 300 + 0.1 * np.eye(37)
    want = np.linalg.inv(a)

    def works(inverse: Callable[[Float64Array], Float64Array | None]) -> bool:
        got = inverse(a)
        return got is not None and np.allclose(got, want, rtol=1e-10, atol=1e-12)

    return first_bound(_bind, works)


def available() -> bool:
    """Whether LAPACK's routines were found (else :func:`inverse` is always None)."""
    if not _bound:
        _bound.append(_checked())
    return _bound[0] is not None


def inverse(a: Float64Array) -> Float64Array | None:
    """``A⁻¹`` for a symmetric positive definite float64 ``A`` (only its upper triangle is
    read), or None if the routines are not bound or the factor fails (``A`` not
    positive definite in floating point).

    >>> a = np.array([[4.0, 2.0], [2.0, 3.0]])
    >>> got = inverse(a)
    >>> got is None or bool(np.allclose(got, np.linalg.inv(a)))
    True
    """
    if not available() or a.ndim != 2 or a.shape[0] != a.shape[1] or not len(a):
        return None
    bound = _bound[0]
    assert bound is not None
    return bound(a)
