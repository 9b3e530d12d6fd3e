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
import os
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgecl.bench.cl import build, joint
from edgecl.bench.recipes import Recipe, parse_spec
from edgecl.bench.report import machine, write_section
from edgecl.bench.streams import ClassIncrementalStream, Latents, fashion_latents
from edgecl.learner import Learner
from edgecl.types import IntArray

log = logging.getLogger("edgecl.bench")
HEADING = "## Streaming quality: NICv2-style Fashion-MNIST"
DEFAULT = "naive,latent_replay,cwr_star,ar1,exstream,gdumb,slda,ncm"


@dataclass(frozen=True)
class NicStream:
    """Stages of single-class batches; ``stages[k]`` lists index arrays into the train pool.

    >>> labels = np.arange(400) % 4
    >>> s = NicStream.make(labels, initial_classes=2, initial_per_class=10, batches=12,
    ...                    batch_size=5, seed=0)
    >>> len(s.stages), len(s.order), sorted(set(labels[s.stages[0][0]])) == sorted(s.order[:2])
    (3, 4, True)
    >>> z = np.arange(400, dtype=np.float32)[:, None]
    >>> s.latents(Latents(z, labels))[1][0].y.tolist() == [s.order[2]] * 5
    True
    """

    stages: list[list[IntArray]]
    order: list[int]  # classes in order of introduction

    @classmethod
    def make(cls, labels: IntArray, *, initial_classes: int, initial_per_class: int,
             batches: int, batch_size: int, seed: int) -> NicStream:  # fmt: skip
        rng = np.random.default_rng(seed)
        classes = sorted(set(labels.tolist()))
        order = [int(c) for c in rng.permutation(classes)]
        pools = {c: rng.permutation(np.flatnonzero(labels == c)).tolist() for c in classes}
        used = dict.fromkeys(classes, 0)

        def draw(c: int, n: int) -> IntArray:
            pool = pools[c]
            idx = [pool[(used[c] + i) % len(pool)] for i in range(n)]  # cycles when exhausted
            used[c] += n
            return np.array(idx, dtype=np.int64)

        first = np.concatenate([draw(c, initial_per_class) for c in order[:initial_classes]])
        stages: list[list[IntArray]] = [[first[rng.permutation(len(first))]]]
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

    @property
    def indices(self) -> IntArray:
        """Every pool index the stream uses, sorted, once."""
        return np.unique(np.concatenate([b for stage in self.stages for b in stage]))

    def latents(self, train: Latents, rows: IntArray | None = None) -> list[list[Latents]]:
        """The stages as latents: ``train`` is the whole pool, or its rows ``rows`` (sorted)."""
        out = []
        for stage in self.stages:
            at = [b if rows is None else np.searchsorted(rows, b) for b in stage]
            out.append([Latents(train.z[i], train.y[i]) for i in at])
        return out


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


def per_class(
    learner: Learner, test: Latents, classes: list[int]
) -> tuple[dict[int, float], float]:
    """Accuracy on the test samples of each of ``classes`` and over all of them, from one
    prediction of each sample (the layers above a cut are the costly part)."""
    data = test.of_classes(classes)
    hits = np.zeros(len(data), dtype=bool)
    for s in range(0, len(data), 1000):
        proba = learner.predict_proba_latents(data.z[s : s + 1000])
        predicted = [learner.labels.decode(int(i)) for i in proba.argmax(axis=1)]
        hits[s : s + 1000] = np.array(predicted) == data.y[s : s + 1000]
    return {c: float(hits[data.y == c].mean()) for c in classes}, float(hits.mean())


def run(recipe: Recipe, stages: list[list[Latents]], test: Latents, memory_items: int,
        seed: int) -> NicResult:  # fmt: skip
    """Learn the stream once, each stream batch cut into the recipe's batches (never joined:
    a recipe batch larger than the stream's takes the stream's as they come)."""
    learner = build(recipe, tuple(test.z.shape[1:]), memory_items, seed)
    matrix: list[dict[int, float]] = []
    seconds, samples, final = 0.0, 0, 0.0
    seen: list[int] = []
    for k, stage in enumerate(stages):
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
        accuracies, final = per_class(learner, test, seen)
        matrix.append(accuracies)
        log.info("%s: stage %d, %d samples in %.0f s, accuracy %.4f",
                 recipe.label, k + 1, samples, seconds, final)  # fmt: skip
    return NicResult(recipe.label, matrix, final, seconds, samples)


def upper_bound(stages: list[list[Latents]], test: Latents, seed: int) -> float:
    """The joint bound: a softmax head trained offline on every sample of the stream."""
    batches = [b for stage in stages for b in stage]
    everything = Latents(np.concatenate([b.z for b in batches]),
                         np.concatenate([b.y for b in batches]))  # fmt: skip
    classes = tuple(sorted(set(everything.y.tolist())))
    return joint(ClassIncrementalStream(everything, test, (classes,), seed), seed=seed).final


def cut_latents(data_dir: Path, cut: str, rows: IntArray) -> tuple[Latents, Latents, Path]:
    """Train latents of pool ``rows`` only (block cuts are large) and the full test set at
    ``cut``, from the cache ``edgecl bench cl`` fills (embedding whatever is missing)."""
    from edgecl.backbones.build import ensure_backbone
    from edgecl.bench.latents import backbone_cache
    from edgecl.datasets import load_full

    manifest = ensure_backbone(data_dir / "backbone", cut)
    train, test = load_full()
    cache, _ = backbone_cache(data_dir / "bench", manifest)
    every = np.arange(len(test.labels))
    return (
        Latents(cache.latents("train", train.images, rows), train.labels[rows]),
        Latents(cache.latents("test", test.images, every), test.labels),
        manifest,
    )


def command_line(argv: list[str]) -> str:
    """The command as typed, with the BLAS threads and niceness it ran under."""
    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    prefix = [f"OPENBLAS_NUM_THREADS={threads}"] if threads else []
    nice = os.nice(0) if hasattr(os, "nice") else 0
    prefix += ["nice", "-n", str(nice)] if nice > 0 else []
    return shlex.join([*prefix, "python", "-m", "edgecl.bench.nic", *argv])


def describe(args: argparse.Namespace, recipes: list[Recipe], classes: int) -> str:
    """The paragraph above the table: data, stream, recipes, what each column means."""
    batches = ", ".join(f"`{r.label}` {r.batch}" for r in recipes)
    ar1 = next((r for r in recipes if r.cut != "pooled"), None)
    cut = ""
    if ar1 is not None:
        options = ", ".join(f"{k}={v}" for k, v in ar1.options.items() if k != "top")
        cut = (
            f" `{ar1.label}` learns from latents of the same samples at the `{ar1.cut}` cut "
            f"({options}, as in `edgecl bench cl`): each stream batch of {args.batch_size} is "
            f"one AR1 batch with its replayed latents (the first batch, in AR1 batches of "
            f"{ar1.batch})."
        )
    return (
        "Fashion-MNIST int8 EfficientNet-Lite0 pooled latents (full train set as the pool, "
        f"full test set). Stream, NICv2 style: {args.initial_classes} classes first "
        f"({args.initial_per_class} samples each, mixed), then {args.batches} single-class "
        f"batches of {args.batch_size}; the other {classes - args.initial_classes} classes "
        "arrive at evenly spaced batches and every other batch repeats an already seen class "
        "(random, seeded). Recipes (store, options) as in `edgecl bench cl`, memory "
        f"{args.memory_items} items; each stream batch is fed in learner batches of at most: "
        f"{batches}.{cut} Per-class test accuracy is taken at the end of each stage (the "
        "batches before the next new class). *Final* is accuracy over all classes at the end; "
        "*forgetting* is the mean over classes of best earlier minus final accuracy; *BWT* "
        "the mean of final minus accuracy right after the class's stage (the last class left "
        "out of both). *Samples/s*: stream samples over the wall time of the learn calls "
        "(and GDumb's retrains)."
    )


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
    recipes = [parse_spec(s) for s in args.strategies.split(",") if s.strip()]
    train, test, _ = fashion_latents(args.data_dir / "bench", args.data_dir / "backbone", "pooled")
    stream = NicStream.make(train.y, initial_classes=args.initial_classes,
                            initial_per_class=args.initial_per_class, batches=args.batches,
                            batch_size=args.batch_size, seed=args.seed)  # fmt: skip
    stages = stream.latents(train)
    rows = []
    for recipe in recipes:
        at, test_at = stages, test
        if recipe.cut != "pooled":
            pool, test_at, manifest = cut_latents(args.data_dir, recipe.cut, stream.indices)
            at = stream.latents(pool, stream.indices)
            if recipe.strategy == "ar1":
                recipe = replace(recipe, options={"top": str(manifest), **recipe.options})
        r = run(recipe, at, test_at, args.memory_items, args.seed)
        forget, bwt = r.forgetting_and_bwt(stream.order, args.initial_classes)
        rows.append(f"| `{r.label}` | {r.final:.1%} | {forget:.1%} | {bwt:+.1%} "
                    f"| {r.samples / max(r.seconds, 1e-9):.0f} |")  # fmt: skip
    bound = upper_bound(stages, test, args.seed)
    body = "\n".join([
        f"Command: `{command_line(sys.argv[1:] if argv is None else argv)}`", "",
        f"Machine: {started}.", "", describe(args, recipes, len(stream.order)), "",
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
