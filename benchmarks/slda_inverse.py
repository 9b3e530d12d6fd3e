"""``slda``'s fresh precision: the inverse of a symmetric positive definite matrix, each
way it can be made.

Ways: ``lapack`` (LAPACK's ``dpotrf`` and ``dpotri`` from NumPy's OpenBLAS, what
:func:`~edgecl.strategies.cholesky.precision` uses where they are found), ``numpy
cholesky`` (:class:`~edgecl.strategies.cholesky.Cholesky`: NumPy's factor, then the
triangular inverse and its Gram product by halves, the fallback), and ``numpy inv`` (an
LU). The matrix is a covariance of ``2n`` random rows plus a small ridge; the median of
``--repeats`` runs.

Run from the repository root; prints the machine and markdown rows::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.slda_inverse
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.bench_common import machine
from benchmarks.slda_products import timed
from edgecl.strategies import spd_inverse
from edgecl.strategies.cholesky import Cholesky


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 640, 960, 1280])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"Machine: {machine()}; LAPACK routines found: {spd_inverse.available()}.\n")  # noqa: T201
    print("| n | lapack ms | numpy cholesky ms | numpy inv ms | largest difference |")  # noqa: T201
    print("| ---: | ---: | ---: | ---: | ---: |")  # noqa: T201
    for n in args.sizes:
        x = rng.standard_normal((2 * n, n))
        a = x.T @ x / (2 * n) + 1e-3 * np.eye(n)
        exact = np.linalg.inv(a)
        fast = spd_inverse.inverse(a)
        diff = "—" if fast is None else f"{np.abs(fast - exact).max() / np.abs(exact).max():.1e}"
        ms = [
            timed(lambda: spd_inverse.inverse(a), args.repeats, None)  # noqa: B023
            if fast is not None
            else float("nan"),
            timed(lambda: Cholesky(a).inverse(), args.repeats, None),  # noqa: B023
            timed(lambda: np.linalg.inv(a), args.repeats, None),  # noqa: B023
        ]
        print(f"| {n} | " + " | ".join(f"{v:.1f}" for v in ms) + f" | {diff} |")  # noqa: T201


if __name__ == "__main__":
    main()
