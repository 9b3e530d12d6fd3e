"""``slda``'s product of its kept precision with a few inputs, each way it can be made.

``P`` is a symmetric 1280x1280 float64 matrix (13.1 MB), the inputs ``m`` rows. Ways:
``thin`` (:func:`~edgecl.strategies.lda_update.thin_product`, ``P`` read once by panels),
``rows`` (one triangle of ``P`` per row, ``cblas_dsymv``), ``gemm`` (``x @ P``). Each is
timed with ``P`` in cache (the same product again) and from memory (a 64 MiB pass between
calls evicts it), the median of ``--repeats``. Which wins for ``m`` of 2 to 6 depends on
the CPU's BLAS kernels: this table is what :data:`~edgecl.strategies.lda_update.SYMV_ROWS`
rests on.

Run from the repository root; prints the machine and markdown rows::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.slda_products
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from benchmarks.bench_common import machine
from edgecl.strategies.lda_update import thin_product
from edgecl.strategies.symv import available, sym_apply

DIM = 1280


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
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12])
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((DIM, DIM))
    p = a @ a.T / DIM
    evict = np.zeros(8 << 20)  # 64 MiB
    print(f"Machine: {machine()}; one-triangle product found: {available()}.\n")  # noqa: T201
    print("Each cell: ms with P in cache / from memory.\n")  # noqa: T201
    print("| rows | thin | rows | gemm |")  # noqa: T201
    print("| ---: | ---: | ---: | ---: |")  # noqa: T201
    for m in args.rows:
        x = rng.standard_normal((m, DIM))
        ways: dict[str, Callable[[], object]] = {
            "thin": lambda: thin_product(p, x),  # noqa: B023
            "rows": lambda: [sym_apply(p, row) for row in x],  # noqa: B023
            "gemm": lambda: x @ p,  # noqa: B023
        }
        cells = [
            f"{timed(work, args.repeats, None):.2f} / {timed(work, args.repeats, evict):.2f}"
            for work in ways.values()
        ]
        print(f"| {m} | " + " | ".join(cells) + " |")  # noqa: T201


if __name__ == "__main__":
    main()
