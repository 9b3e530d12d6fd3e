"""``slda``'s longest learning steps: where in the stream they fall and what they spend.

The daemon's writer learns a micro-batch at a time and replies to every request in it
when the step ends, so one long step holds back every reply waiting on it. This streams
``--samples`` structured random 1280-d latents (as *Strategy cost*) through
``StreamingLDA`` in micro-batches of 1 to 3 (single-image requests), each predicted
first (test-then-train), and prints each step longer than ``--over`` ms with its stream
position and the fresh factorisations in it (their size and time).

Run from the repository root::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.slda_pauses
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.bench_common import N_CLASSES, machine
from benchmarks.strategy_cost import make_latents
from edgecl.strategies.linear import Float64Array
from edgecl.strategies.slda import StreamingLDA


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--over", type=float, default=30.0, help="ms")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    z, y = make_latents(args.samples, rng)
    head = StreamingLDA()
    head.add_classes(N_CLASSES)
    factorised: list[str] = []
    inverse = head._inverse

    def timed_inverse(a: Float64Array) -> Float64Array:
        start = time.perf_counter()
        out = inverse(a)
        factorised.append(f"{len(a)}x{len(a)} in {1000 * (time.perf_counter() - start):.0f}")
        return out

    head._inverse = timed_inverse  # type: ignore[method-assign]
    print(f"Machine: {machine()}.\n")  # noqa: T201
    print("| samples learned | step ms | factorisations in it (ms) |")  # noqa: T201
    print("| ---: | ---: | --- |")  # noqa: T201
    i, steps, began = 0, [], time.perf_counter()
    while i < args.samples:
        k = int(rng.integers(1, 4))
        factorised.clear()
        start = time.perf_counter()
        if i:
            head.predict_proba_many(z[i : i + k])
        head.learn_many(z[i : i + k], y[i : i + k])
        ms = 1000 * (time.perf_counter() - start)
        steps.append(ms)
        if ms > args.over:
            print(f"| {i} | {ms:.0f} | {', '.join(factorised) or '—'} |")  # noqa: T201
        i += k
    took = time.perf_counter() - began
    print(  # noqa: T201
        f"\n{len(steps)} steps in {took:.1f} s; median {np.median(steps):.2f} ms, "
        f"99th percentile {np.percentile(steps, 99):.1f} ms, longest {max(steps):.0f} ms."
    )


if __name__ == "__main__":
    main()
