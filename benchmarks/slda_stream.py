"""``slda`` over a long stream of single samples: rate, longest step and memory by window.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.slda_stream [--samples 100000]
    OPENBLAS_NUM_THREADS=1 taskset -c 0 python -m benchmarks.slda_stream  # no thread

Test-then-train one sample at a time through ``Learner`` on 1280-d latents (those of
``slda_speed``), made a window at a time so that the stream itself takes no memory. Each
window row: samples per second (wall clock and CPU time), the longest ``learn_one``, the
most rank-one terms that waited to be folded into ``Σ`` at once, and the process's RSS at
the window's end. Where the process may run on one CPU only, every factorisation and fold
runs in the step that needs it.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_common import command_line, machine, rss_mib, section_head, write_section
from benchmarks.strategy_cost import make_latents
from edgecl import Learner
from edgecl.backbones import IdentityBackbone
from edgecl.cpus import usable_cpus
from edgecl.strategies.slda import StreamingLDA

HEADING = "## `slda` over a long stream of single samples"
DIM = 1280


def waiting_terms(s: StreamingLDA) -> int:
    """Rank-one terms not folded into ``Σ`` yet (the head's own count: O(1) a step)."""
    return s.n_updates - s._sigma_at


def run(samples: int, window: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    head = StreamingLDA()
    learner = Learner(IdentityBackbone(DIM), head)
    rows = []
    for start in range(0, samples, window):
        z, y = make_latents(min(window, samples - start), rng)
        labels = [int(v) for v in y]
        began, cpu, longest, most = time.perf_counter(), time.process_time(), 0.0, 0
        for i in range(len(z)):
            step = time.perf_counter()
            learner.learn_one(z[i], labels[i])
            longest = max(longest, time.perf_counter() - step)
            most = max(most, waiting_terms(head))
        rows.append(
            {
                "start": start,
                "stop": start + len(z),
                "rate": len(z) / (time.perf_counter() - began),
                "cpu_rate": len(z) / (time.process_time() - cpu),
                "longest_ms": 1000 * longest,
                "waiting": most,
                "rss": rss_mib(os.getpid()),
            }
        )
        print(rows[-1], flush=True)  # noqa: T201
        del z, y
    return rows


def section(rows: list[dict[str, Any]], command: str, where: str) -> str:
    cpus = usable_cpus()
    mode = (
        f"This process could run on {cpus} CPUs: factorisations and folds of `Σ` ran in threads."
        if cpus > 1
        else "This process could run on 1 CPU: every factorisation and fold of `Σ` ran in "
        "the step that needed it."
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = [
        "| samples learned | `learn_one` /s | /s of CPU time | longest `learn_one` ms "
        "| most terms waiting for `Σ` | RSS at the end, MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        table.append(
            f"| {r['start']}–{r['stop']} | {r['rate']:.0f} | {r['cpu_rate']:.0f} "
            f"| {r['longest_ms']:.0f} | {r['waiting']} | {r['rss']:.0f} |"
        )
    return "\n".join(
        [
            *section_head(HEADING, command, where),
            "Test-then-train one sample at a time through `Learner`, `slda` with its "
            "defaults, on the 1280-d latents of *`slda` learning speed* (ten classes), made "
            f"a window at a time. {mode} A waiting term is one row of {DIM} float64 "
            f"({DIM * 8 / 1024:.0f} KiB).",
            "",
            *table,
            "",
            f"Peak RSS of the process: {peak:.0f} MiB.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    if args.samples < 1 or args.window < 1:
        parser.error("--samples and --window must be at least 1")
    command = command_line("benchmarks.slda_stream")
    where = machine()
    rows = run(args.samples, args.window, args.seed)
    write_section(args.output, HEADING, section(rows, command, where))
    print(f"wrote {HEADING!r} in {args.output}")  # noqa: T201


if __name__ == "__main__":
    main()
