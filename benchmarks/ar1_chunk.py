"""AR1's training batch at each ``train_chunk``: peak memory and time, in-process.

One process per chunk size (peaks do not mix): ``AR1`` with its defaults on the
``block14`` build's top, ten classes, and batches as the daemon gives it: ``--new`` fresh
latents plus a replay draw of 1500 int8 latents (the store's form), 4 epochs of 128.
Latents are ReLU of class prototypes plus noise, 192x7x7. Per batch: RSS right before it,
the peak during it (``VmHWM``, reset before the batch) and its wall and CPU time. The
first batch of a process also pays for oneDNN's first runs, so compare the later ones.

Run from the repository root; prints markdown rows::

    OPENBLAS_NUM_THREADS=1 MALLOC_ARENA_MAX=2 python -m benchmarks.ar1_chunk --chunks 8 4 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_common import BACKBONE_CACHE, N_CLASSES, latents, machine, proc_status_mib

CUT, SHAPE, REPLAY = "block14", (192, 7, 7), 1500


def _status(key: str) -> float:
    return proc_status_mib(os.getpid(), key)


def _latents(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The memory soak's latents, shaped as block14's, with class indices."""
    z, names = latents(n, int(np.prod(SHAPE)), rng)
    y = np.array([int(name.removeprefix("class-")) for name in names])
    return z.reshape(n, *SHAPE), y


def one(chunk: int, batches: int, new: int, backbone_dir: Path) -> None:
    """Train ``batches`` batches at ``chunk`` in this process; print a row per batch."""
    from edgecl.backbones.build import ensure_backbone
    from edgecl.replay.compress import quantize_int8
    from edgecl.replay.drawn import EncodedDraw, LatentRows
    from edgecl.strategies.ar1 import AR1

    s = AR1(top=str(ensure_backbone(backbone_dir, CUT)), train_chunk=chunk)
    s.add_classes(N_CLASSES)
    rng = np.random.default_rng(0)
    replay, y_replay = _latents(rng, REPLAY)
    draw = EncodedDraw(*quantize_int8(replay))
    del replay
    for b in range(batches):
        z, y = _latents(rng, new)
        rows, labels = LatentRows(z, draw), np.concatenate([y, y_replay])
        before = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from now
        wall, cpu = time.perf_counter(), time.process_time()
        s.learn_rows(rows, labels)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = _status("VmHWM")
        print(
            f"| {chunk} | {b + 1} | {before:.0f} | {peak:.0f} | +{peak - before:.0f} "
            f"| {wall:.1f} | {cpu:.1f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 4, 2])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--new", type=int, default=64, help="fresh latents per batch")
    parser.add_argument("--backbone-dir", type=Path, default=BACKBONE_CACHE)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child's chunk
    args = parser.parse_args()
    if args.one is not None:
        one(args.one, args.batches, args.new, args.backbone_dir)
        return
    print(f"Machine: {machine()}.\n")
    print("| train_chunk | batch | RSS before MiB | peak MiB | peak over before | wall s | CPU s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    for chunk in args.chunks:
        subprocess.run(
            [sys.executable, "-m", "benchmarks.ar1_chunk", "--one", str(chunk),
             "--batches", str(args.batches), "--new", str(args.new),
             "--backbone-dir", str(args.backbone_dir)],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
