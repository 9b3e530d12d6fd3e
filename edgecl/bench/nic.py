"""A streaming protocol in the style of CORe50 NICv2 on Fashion-MNIST latents.

An initial batch of a few classes, then many small single-class batches: each not-yet-seen
class is introduced at evenly spaced points, and every other batch repeats an already seen
class (new instances of old classes). Accuracy on each class's test samples is measured
at the end of every *stage* (the batches up to the next new class), giving final average
accuracy, average forgetting and backward transfer, beside a joint (offline) upper bound.

    python -m edgecl.bench.nic [--data-dir edgecl-data] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecl.bench.cl import RECIPES, accuracy, build, joint, parse_spec
from edgecl.bench.report import machine, write_section
from edgecl.bench.streams import ClassIncrementalStream, Latents, fashion_latents

log = logging.getLogger("edgecl.bench")
HEADING = "## Streaming quality: NICv2-style Fashion-MNIST"
# ExStream (one sample per step) takes minutes over this stream: ask for it by name.
DEFAULT = "naive,latent_replay,cwr_star,gdumb,slda,ncm"


@dataclass(frozen=True)
class NicStream:
    """Stages of single-class batches; ``stages[k]`` is a list of ``Latents`` batches.

    >>> rng = np.random.default_rng(0)
    >>> train = Latents(rng.normal(size=(400, 3)).astype(np.float32), np.arange(400) % 4)
    >>> s = NicStream.make(train, initial_classes=2, initial_per_class=10, batches=12,
    ...                    batch_size=5, seed=0)
    >>> len(s.stages), len(s.order), sorted(set(s.stages[0][0].y.tolist())) == sorted(s.order[:2])
    (3, 4, True)
    """

    stages: list[list[Latents]]
    order: list[int]  # classes in order of introduction

    @classmethod
    def make(cls, train: Latents, *, initial_classes: int, initial_per_class: int,
             batches: int, batch_size: int, seed: int) -> NicStream:  # fmt: skip
        rng = np.random.default_rng(seed)
        classes = sorted(set(train.y.tolist()))
        order = [int(c) for c in rng.permutation(classes)]
        pools = {c: rng.permutation(np.flatnonzero(train.y == c)).tolist() for c in classes}
        used = dict.fromkeys(classes, 0)

        def draw(c: int, n: int) -> Latents:
            pool = pools[c]
            idx = [pool[(used[c] + i) % len(pool)] for i in range(n)]  # cycles when exhausted
            used[c] += n
            return Latents(train.z[idx], train.y[idx])

        first = [draw(c, initial_per_class) for c in order[:initial_classes]]
        mixed = np.concatenate([b.z for b in first]), np.concatenate([b.y for b in first])
        perm = rng.permutation(len(mixed[1]))
        stages: list[list[Latents]] = [[Latents(mixed[0][perm], mixed[1][perm])]]
        new = order[initial_classes:]
        # Batch positions at which each new class arrives, evenly spaced over the stream.
        arrivals = {int(round(k * batches / len(new))): c for k, c in enumerate(new)}
        seen = list(order[:initial_classes])
        for b in range(batches):
            if b in arrivals:
                seen.append(arrivals[b])
                stages.append([draw(arrivals[b], batch_size)])
            else:
                stages[-1].append(draw(int(rng.choice(seen)), batch_size))
        return cls(stages, order)


@dataclass
class NicResult:
    label: str
    matrix: list[dict[int, float]]  # per stage: class -> accuracy on its test samples
    final: float
    seconds: float
    samples: int

    def forgetting_and_bwt(self, order: list[int], initial: int) -> tuple[float, float]:
        """Mean over classes of (best earlier − final) and of (final − just after learning);
        the last class introduced is left out (nothing came after it)."""
        intro = dict.fromkeys(order[:initial], 0)
        intro.update({c: k + 1 for k, c in enumerate(order[initial:])})
        last = len(self.matrix) - 1
        forget, bwt = [], []
        for c, k in intro.items():
            if k >= last:
                continue
            history = [self.matrix[t][c] for t in range(k, last)]
            forget.append(max(history) - self.matrix[last][c])
            bwt.append(self.matrix[last][c] - self.matrix[k][c])
        return float(np.mean(forget)), float(np.mean(bwt))


def run(spec: str, stream: NicStream, test: Latents, memory_items: int, seed: int) -> NicResult:
    recipe = parse_spec(spec)
    learner = build(recipe, tuple(test.z.shape[1:]), memory_items, seed)
    matrix: list[dict[int, float]] = []
    seconds, samples = 0.0, 0
    seen: list[int] = []
    for stage in stream.stages:
        start = time.perf_counter()
        for batch in stage:
            for s in range(0, len(batch), recipe.batch):
                learner.learn_latents(batch.z[s : s + recipe.batch],
                                      batch.y[s : s + recipe.batch].tolist())  # fmt: skip
            samples += len(batch)
        if recipe.retrain:
            learner.retrain()
        seconds += time.perf_counter() - start
        seen = sorted(set(seen) | {int(c) for b in stage for c in set(b.y.tolist())})
        matrix.append({c: accuracy(learner, test.of_classes([c])) for c in seen})
    final = accuracy(learner, test.of_classes(seen))
    log.info("%s: final accuracy %.4f", recipe.label, final)
    return NicResult(recipe.label, matrix, final, seconds, samples)


def upper_bound(stream: NicStream, test: Latents, seed: int) -> float:
    """The joint bound: a softmax head trained offline on every sample of the stream."""
    batches = [b for stage in stream.stages for b in stage]
    everything = Latents(np.concatenate([b.z for b in batches]),
                         np.concatenate([b.y for b in batches]))  # fmt: skip
    classes = tuple(sorted(set(everything.y.tolist())))
    return joint(ClassIncrementalStream(everything, test, (classes,), seed), seed=seed).final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--strategies", default=DEFAULT, help="comma-separated list")
    parser.add_argument("--data-dir", type=Path, default=Path("edgecl-data"))
    parser.add_argument("--batches", type=int, default=160, help="small batches after the first")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--initial-classes", type=int, default=2)
    parser.add_argument("--initial-per-class", type=int, default=500)
    parser.add_argument("--memory-items", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the section here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = machine()
    train, test, _ = fashion_latents(args.data_dir / "bench", args.data_dir / "backbone", "pooled")
    stream = NicStream.make(train, initial_classes=args.initial_classes,
                            initial_per_class=args.initial_per_class, batches=args.batches,
                            batch_size=args.batch_size, seed=args.seed)  # fmt: skip
    specs = [s for s in args.strategies.split(",") if s.strip() and s.split(":")[0] in RECIPES]
    rows = []
    for spec in specs:
        r = run(spec, stream, test, args.memory_items, args.seed)
        forget, bwt = r.forgetting_and_bwt(stream.order, args.initial_classes)
        rows.append(f"| `{r.label}` | {r.final:.1%} | {forget:.1%} | {bwt:+.1%} "
                    f"| {r.samples / max(r.seconds, 1e-9):.0f} |")  # fmt: skip
    bound = upper_bound(stream, test, args.seed)
    command = shlex.join(["python", "-m", "edgecl.bench.nic", *(argv or sys.argv[1:])])
    body = "\n".join([
        f"Command: `{command}`", "", f"Machine: {started}.", "",
        f"Fashion-MNIST int8 EfficientNet-Lite0 pooled latents (full train set as the pool, "
        f"full test set). Stream, NICv2 style: {args.initial_classes} classes first "
        f"({args.initial_per_class} samples each, mixed), then {args.batches} single-class "
        f"batches of {args.batch_size}; the other {len(stream.order) - args.initial_classes} "
        "classes arrive at evenly spaced batches and every other batch repeats an already "
        "seen class (random, seeded). Recipes (store, batch) as in `edgecl bench cl`, "
        f"memory {args.memory_items} items. Per-class test accuracy is taken at the end of "
        "each stage (the batches before the next new class). *Final* is accuracy over all "
        "classes at the end; *forgetting* is the mean over classes of best earlier minus "
        "final accuracy; *BWT* the mean of final minus accuracy right after the class's "
        "stage (the last class left out of both).",
        "",
        "| strategy | final accuracy | average forgetting | BWT | samples/s |",
        "| --- | ---: | ---: | ---: | ---: |", *rows,
        f"| joint (offline) | {bound:.1%} | | | |",
    ])  # fmt: skip
    print(body)  # noqa: T201
    if args.out is not None:
        write_section(args.out, body, HEADING)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
