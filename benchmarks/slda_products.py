"""``slda``'s product of its kept precision with a few inputs, each way it can be made.

``P`` is a symmetric 1280x1280 float64 matrix (13.1 MB), the inputs ``m`` rows. Ways:
``thin`` (:func:`~edgecl.strategies.lda_update.thin_product`, ``P`` read once by panels),
``rows`` (one triangle of ``P`` per row, ``cblas_dsymv``), ``gemm`` (``x @ P``), and two
that read one triangle of ``P`` for all rows at once, not shipped: ``symm`` (OpenBLAS's
``cblas_dsymm``, bound here) and ``halves`` (panels of the upper triangle, each used for
its rows and, transposed, for its columns). Each is
timed with ``P`` in cache (the same product again) and from memory (a 64 MiB pass between
calls evicts it), the median of ``--repeats``. Which wins for ``m`` of 2 to 6 depends on
the CPU's BLAS kernels: tables of this kind are what
:func:`~edgecl.strategies.lda_update.symv_rows` chooses from by the CPU's flags.

Run from the repository root; prints the machine and markdown rows::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.slda_products
"""

from __future__ import annotations

import argparse
import ctypes
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.bench_common import machine
from edgecl.strategies.lda_update import SYMV_ROWS, thin_product
from edgecl.strategies.symv import available, libraries, sym_apply

DIM = 1280
_PANEL = 128
_PTR = ctypes.POINTER(ctypes.c_double)


def bound_symm() -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """``x P`` by ``cblas_dsymm`` (``P``'s upper triangle) from NumPy's OpenBLAS, if found."""
    for path in libraries():
        fn: Any = getattr(ctypes.CDLL(path), "scipy_cblas_dsymm64_", None)
        if fn is None:
            continue
        n64 = ctypes.c_int64
        fn.restype = None
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, n64, n64, ctypes.c_double,
                       _PTR, n64, _PTR, n64, ctypes.c_double, _PTR, n64]  # fmt: skip

        def symm(p: np.ndarray, x: np.ndarray, fn: Any = fn) -> np.ndarray:
            m, n = x.shape
            out = np.empty((m, n))
            # row major, P on the right, its upper triangle
            fn(101, 142, 121, m, n, 1.0, p.ctypes.data_as(_PTR), n, x.ctypes.data_as(_PTR),
               n, 0.0, out.ctypes.data_as(_PTR), n)  # fmt: skip
            return out

        return symm
    return None


def halves(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x P`` reading ``P``'s upper triangle once: each panel of rows ``i:j`` (from the
    diagonal on) for ``P[i:j] x``, and its part right of the diagonal block, transposed,
    for the rows below."""
    n, xt = len(p), np.ascontiguousarray(x.T)
    out = np.zeros((n, len(x)))
    for i in range(0, n, _PANEL):
        j = min(i + _PANEL, n)
        block = p[i:j, i:j]
        out[i:j] += np.triu(block) @ xt[i:j] + np.triu(block, 1).T @ xt[i:j]
        out[i:j] += p[i:j, j:] @ xt[j:]
        out[j:] += p[i:j, j:].T @ xt[i:j]
    return np.ascontiguousarray(out.T)


def timed(work: Callable[[], object], repeats: int, evict: np.ndarray | None) -> float:
    """Median ms of ``work``; with ``evict``, a pass over it before each call."""
    work()
    times = []
    for _ in range(repeats):
        if evict is not None:
            evict += 1.0
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 10, 12])
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((DIM, DIM))
    p = a @ a.T / DIM
    evict = np.zeros(8 << 20)  # 64 MiB
    symm = bound_symm()
    if symm is not None:
        x = rng.standard_normal((3, DIM))
        assert np.allclose(symm(p, x), x @ p)
    found = (
        f"one-triangle product found: {available()}, dsymm found: {symm is not None}, "
        f"rows one triangle each up to {SYMV_ROWS} (SYMV_ROWS)"
    )
    print(f"Machine: {machine()}; {found}.\n")  # noqa: T201
    print("Each cell: ms with P in cache / from memory (symm: gemm if not found).\n")  # noqa: T201
    print("| rows | thin | rows | gemm | symm | halves |")  # noqa: T201
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")  # noqa: T201
    for m in args.rows:
        x = rng.standard_normal((m, DIM))
        assert np.allclose(halves(p, x), x @ p)
        ways: dict[str, Callable[[], object]] = {
            "thin": lambda: thin_product(p, x),  # noqa: B023
            "rows": lambda: [sym_apply(p, row) for row in x],  # noqa: B023
            "gemm": lambda: x @ p,  # noqa: B023
            "symm": lambda: x @ p if symm is None else symm(p, x),  # noqa: B023
            "halves": lambda: halves(p, x),  # noqa: B023
        }
        cells = [
            f"{timed(work, args.repeats, None):.2f} / {timed(work, args.repeats, evict):.2f}"
            for work in ways.values()
        ]
        print(f"| {m} | " + " | ".join(cells) + " |")  # noqa: T201


if __name__ == "__main__":
    main()
