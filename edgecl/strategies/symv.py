"""``P x`` for a symmetric ``P``, reading one triangle of it.

A matrix-vector product is bound by memory, and ``slda``'s kept precision is 13.1 MB at
1280-d: reading half of it makes ``learn_one`` faster by about a third. NumPy has no
symmetric product, but the OpenBLAS that NumPy's wheels carry (``numpy.libs``, also on
aarch64) exports ``cblas_dsymv``; it is bound here with ctypes. Where it is not found (a
NumPy built on another BLAS) or fails a check on first use, the general product is used:
same results to rounding, only slower.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from edgecl.types import Float64Array

T = TypeVar("T")

_ROW_MAJOR, _UPPER = 101, 121  # CBLAS enum values
# (symbol, integer type): NumPy's ILP64 wheel, then 32-bit-integer builds
_SYMBOLS = (
    ("scipy_cblas_dsymv64_", ctypes.c_int64),
    ("cblas_dsymv64_", ctypes.c_int64),
    ("scipy_cblas_dsymv", ctypes.c_int32),
    ("cblas_dsymv", ctypes.c_int32),
)
_bound: list[Callable[[Float64Array, Float64Array], Float64Array] | None] = []


def libraries() -> list[str]:
    """The OpenBLAS shared libraries NumPy's wheels carry (none for other builds)."""
    base = os.path.dirname(os.path.dirname(np.__file__))  # site-packages
    return sorted(glob.glob(os.path.join(base, "numpy.libs", "*openblas*")))


def _bind(path: str) -> Callable[[Float64Array, Float64Array], Float64Array] | None:
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for name, integer in _SYMBOLS:
        fn: Any = getattr(lib, name, None)
        if fn is None:
            continue
        ptr = ctypes.POINTER(ctypes.c_double)
        fn.restype = None
        fn.argtypes = [ctypes.c_int, ctypes.c_int, integer, ctypes.c_double, ptr, integer,
                       ptr, integer, ctypes.c_double, ptr, integer]  # fmt: skip

        def product(p: Float64Array, x: Float64Array, fn: Any = fn) -> Float64Array:
            n, out = len(p), np.zeros(len(p))
            ptr = ctypes.POINTER(ctypes.c_double)
            fn(_ROW_MAJOR, _UPPER, n, 1.0, p.ctypes.data_as(ptr), n,
               x.ctypes.data_as(ptr), 1, 0.0, out.ctypes.data_as(ptr), 1)  # fmt: skip
            return out

        return product
    return None


def first_bound(bind: Callable[[str], T | None], works: Callable[[T], bool]) -> T | None:
    """The first of :func:`libraries`' routines ``bind`` finds that passes ``works``."""
    for path in libraries():
        bound = bind(path)
        if bound is not None and works(bound):
            return bound
    return None


def _checked() -> Callable[[Float64Array, Float64Array], Float64Array] | None:
    """The bound product if it matches the general one on a small example, else None."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 37))
    p, x = a + a.T, rng.standard_normal(37)
    return first_bound(
        _bind, lambda product: np.allclose(product(p, x), p @ x, rtol=1e-12, atol=1e-12)
    )


def available() -> bool:
    """Whether the one-triangle product was found (else :func:`sym_apply` is ``P x``)."""
    if not _bound:
        _bound.append(_checked())
    return _bound[0] is not None


def sym_apply(p: npt.NDArray[np.floating[Any]], x: Float64Array) -> Float64Array:
    """``P x`` for a symmetric float64 ``P`` (only its upper triangle is read when the
    one-triangle product is available) and one vector ``x``.

    >>> a = np.arange(16.0).reshape(4, 4)
    >>> p = a + a.T
    >>> bool(np.allclose(sym_apply(p, np.ones(4)), p @ np.ones(4)))
    True
    """
    if (
        available()
        and p.dtype == np.float64
        and p.flags.c_contiguous
        and p.ndim == 2
        and p.shape[0] == p.shape[1] == len(x)
    ):
        product = _bound[0]
        assert product is not None
        return product(np.asarray(p, dtype=np.float64), np.ascontiguousarray(x, np.float64))
    return np.asarray(p @ x, dtype=np.float64)
