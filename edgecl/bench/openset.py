"""Calibration and open-set recognition of each strategy on a class-incremental stream.

Each strategy learns the stream as ``edgecl bench cl`` feeds it (same recipes), through a
probe with the daemon's defaults (5% of samples held back, 512 KiB, re-scored every 500
learned samples and at the end of each experience); its calibration is fitted on the
probe's items only. Measured on the test images:

- *ECE*: expected calibration error (15 equal-width bins of the top probability) over
  every class after the last experience, before (``T = 1``) and after temperature scaling;
- *near-novel AUROC*: after experience ``k`` (of all but the last), the classes of
  experiences ``1..k`` are known and the stream's later classes unknown; the AUROC of the
  novelty score telling the test images of the later classes from those of the known ones;
- *far-novel AUROC*: after the last experience, every class is known and the test images
  of another domain (digits for Fashion-MNIST, Fashion-MNIST for digits, through the same
  backbone) are unknown.

    python -m edgecl.bench.openset [--stream fashion] [--strategies slda,ncm] [--out FILE]

``--validation`` measures on a held-out fifth of the training images (and the other
domain's training images) instead of the test sets: hyper-parameters are chosen there.
``--folds K`` runs K times instead, each time one of K seeded folds of the images (train
and test together; with ``--validation``, the training images only) as the test set and
the rest as the stream, and pools the test predictions: every image is a test image once,
which on a small stream measures ECE with less noise. *ECE floor* is the ECE a model
exactly as calibrated as it claims would measure on as many images (labels drawn from its
own probabilities): what the measurement alone adds.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

import numpy as np

from edgecl.bench import cl
from edgecl.bench.open_measure import OpenMeter, OpenResult, summarise
from edgecl.bench.recipes import Recipe, parse_spec
from edgecl.bench.report import machine, write_section
from edgecl.bench.streams import SPLIT_FASHION, STREAMS, ClassIncrementalStream, Latents

log = logging.getLogger("edgecl.bench")
DEFAULT = "slda,ncm,latent_replay,gdumb"
HEADING = "## Calibration and open set: {name}"


def run(
    recipe: Recipe,
    streams: list[ClassIncrementalStream],
    far: Latents,
    *,
    memory_items: int = 1500,
    seed: int = 0,
    share: float = 0.05,
) -> OpenResult:
    """Learn each of ``streams`` once with ``recipe`` through a probe (seeds ``seed``,
    ``seed + 1``, ...); their calibration and AUROCs, pooled when there are several."""
    meters = []
    for k, stream in enumerate(streams):
        meter = OpenMeter(stream, far)
        cl.run(
            recipe,
            stream,
            memory_items=memory_items,
            seed=seed + k,
            probe_share=share,
            observe=meter.after,
        )
        meters.append(meter)
    result = summarise(recipe.label, meters)
    log.info("%s: %s", recipe.label, result)
    return result


def table(results: list[OpenResult]) -> str:
    """One row per strategy.

    >>> r = OpenResult("ncm", 0.8, 0.2, 0.03, 0.9, 0.6, 0.5, [0.9, 0.8], 0.97, 0.95,
    ...                [0.4, 0.3], 0.9, 100, floor=0.02)
    >>> print(table([r]).splitlines()[2])
    | `ncm` | 80.0 | 0.200 | **0.030** | 0.020 | 0.90 | 0.60 | 0.5 | 100 | **0.850** (0.800) | **0.970** | 95.0 | 35.0 | 90.0 |  |
    """  # noqa: E501
    lines = [
        "| strategy | accuracy | ECE T=1 | ECE | ECE floor | NLL T=1 | NLL | T | probe items "
        "| near AUROC mean (min) | far AUROC | known accepted % | near flagged % "
        "| far flagged % | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | --- |",
    ]
    for r in results:
        cells = [
            f"`{r.label}`",
            f"{100 * r.accuracy:.1f}",
            f"{r.ece_raw:.3f}",
            f"**{r.ece:.3f}**",
            f"{r.floor:.3f}",
            f"{r.nll_raw:.2f}",
            f"{r.nll:.2f}",
            f"{r.temperature:.3g}",
            str(r.held),
            f"**{np.mean(r.near):.3f}** ({min(r.near):.3f})",
            f"**{r.far:.3f}**",
            f"{100 * r.accepted:.1f}",
            f"{100 * np.mean(r.near_flagged):.1f}",
            f"{100 * r.far_flagged:.1f}",
            "; ".join(r.notes),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_cut(results: list[OpenResult]) -> str:
    """Near-novel AUROC after each experience (known: its classes and earlier ones)."""
    cuts = len(results[0].near) if results else 0
    head = " | ".join(f"after exp {k + 1}" for k in range(cuts))
    lines = [f"| strategy | {head} |", "| --- |" + " ---: |" * cuts]
    for r in results:
        lines.append(f"| `{r.label}` | " + " | ".join(f"{a:.3f}" for a in r.near) + " |")
    return "\n".join(lines)


OTHER = {"fashion": "digits", "digits": "fashion"}


def split(train: Latents, seed: int) -> tuple[Latents, Latents]:
    """A seeded four-fifths / one-fifth split of training latents (validation mode)."""
    order = np.random.default_rng([seed, 15]).permutation(len(train))
    cut = len(train) * 4 // 5
    fit, held = order[:cut], order[cut:]
    return Latents(train.z[fit], train.y[fit]), Latents(train.z[held], train.y[held])


def folds(images: Latents, k: int, seed: int) -> list[tuple[Latents, Latents]]:
    """``k`` seeded (stream, test) pairs whose test sets cover ``images`` once each.

    >>> data = Latents(np.zeros((10, 1), np.float32), np.arange(10) % 2)
    >>> [(len(a), len(b)) for a, b in folds(data, 3, 0)]
    [(6, 4), (7, 3), (7, 3)]
    """
    order = np.random.default_rng([seed, 15, k]).permutation(len(images))
    fold = np.empty(len(images), np.int64)
    fold[order] = np.arange(len(images)) % k
    return [
        (
            Latents(images.z[fold != f], images.y[fold != f]),
            Latents(images.z[fold == f], images.y[fold == f]),
        )
        for f in range(k)
    ]


def command(args: argparse.Namespace) -> str:
    """The flags that change the figures (the data folder does not)."""
    flags = ["--stream", args.stream, "--strategies", args.strategies]
    flags += ["--validation"] if args.validation else []
    for flag, value, default in (
        ("--limit-train", args.limit_train, None),
        ("--memory-items", args.memory_items, 1500),
        ("--share", args.share, 0.05),
        ("--folds", args.folds, 0),
        ("--seed", args.seed, 0),
    ):
        flags += [] if value == default else [flag, str(value)]
    return shlex.join([*flags, "--out", "BENCHMARKS.md"])


def describe(args: argparse.Namespace, streams: list[ClassIncrementalStream], far: Latents) -> str:
    """The paragraph above the tables: command, data, machine, what the columns mean."""
    name, other, stream = args.stream, OTHER[args.stream], streams[0]
    default = " as the daemon does" if args.share == 0.05 else " (the daemon: 5%)"
    where = "a held-out fifth of the training images" if args.validation else "the test images"
    tested = len(stream.test)
    if args.folds:
        pool = "the training images" if args.validation else "all images, train and test"
        tested = sum(len(s.test) for s in streams)
        where = (
            f"each of {args.folds} seeded folds of {pool} in turn (the stream: the other "
            f"folds, {args.folds} runs with seeds {args.seed}..{args.seed + args.folds - 1}), "
            "the test predictions pooled; T and probe items: the runs' geometric and "
            "arithmetic means, AUROC: the mean over the runs"
        )
    return (
        f"Command: `OPENBLAS_NUM_THREADS=1 nice -n 5 python -m edgecl.bench.openset "
        f"{command(args)}`\n\n"
        f"Machine: {machine()}.\n\n"
        f"Stream: {len(stream.train)} training images of {STREAMS[name]} as 5 experiences of "
        "2 new classes (order 0..9), each sample learned once, pooled 1280-d latents of the "
        "int8 EfficientNet-Lite0 backbone, the recipes of `edgecl bench cl`, through a probe "
        f"({args.share:.0%} held back{default}, 512 KiB, re-scored every 500 "
        "learned samples and after each experience): the temperature and the novelty threshold "
        "(95% of the probe's known items accepted) are fitted on its items only. Measured "
        f"on {where} ({tested}); far-novel: {len(far)} images of {STREAMS[other]}. "
        "*Accuracy*, *ECE* (15 bins), *NLL*: over all ten classes after the last experience, "
        "before (T=1) and after temperature scaling; *ECE floor*: what a model exactly as "
        "calibrated as it claims would measure on as many images (labels drawn from its own "
        "probabilities, mean of 20 draws). *Near AUROC*: after experience k = 1..4, "
        "the test images of the classes learned so far (known) against those of the "
        "stream's later classes (unknown), scored by novelty; mean and least over the four "
        "cuts. *Far AUROC*: after the last experience, every test image of the stream "
        "(known) against the other domain's. *Known accepted*: test images of taught "
        "classes under the fitted threshold, after the last experience; *flagged*: unknown "
        "images over it (near: mean over the cuts). Novelty: `slda` the squared Mahalanobis "
        "distance to the nearest class mean under its shared covariance, `ncm` and `gdumb` the "
        "distance to the nearest class mean (of every sample learned), softmax heads the "
        "energy of their logits."
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark (also those of ``edgecl bench openset``)."""
    p.add_argument("--strategies", default=DEFAULT)
    p.add_argument("--stream", choices=sorted(OTHER), default="fashion")
    p.add_argument("--memory-items", type=int, default=1500)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--validation", action="store_true", help="measure on a held-out fifth")
    p.add_argument("--data-dir", type=Path, default=Path("edgecl-data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--share", type=float, default=0.05, help="probe share held back")
    p.add_argument("--folds", type=int, default=0, help="pool K runs, each image tested once")
    p.add_argument("--out", type=Path, default=None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run_args(p.parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    from edgecl.bench.streams import fashion_latents

    if args.folds == 1 or args.folds < 0:
        raise ValueError(f"--folds must be 0 (the test set) or at least 2, got {args.folds}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cache, backbones = args.data_dir / "bench", args.data_dir / "backbone"

    def load(name: str, limit_train: int | None) -> tuple[Latents, Latents]:
        train, test, _ = fashion_latents(
            cache, backbones, "pooled", limit_train=limit_train, stream=name
        )
        return train, test

    train, test = load(args.stream, args.limit_train)
    other_train, other_test = load(OTHER[args.stream], 10000)
    far = other_train if args.validation else other_test
    if args.validation and not args.folds:
        train, test = split(train, args.seed)
    if args.folds:
        images = (
            train
            if args.validation
            else Latents(np.concatenate([train.z, test.z]), np.concatenate([train.y, test.y]))
        )
        pairs = folds(images, args.folds, args.seed)
    else:
        pairs = [(train, test)]
    streams = [
        ClassIncrementalStream(a, b, SPLIT_FASHION, args.seed + k) for k, (a, b) in enumerate(pairs)
    ]
    results = []
    for spec in args.strategies.split(","):
        recipe = parse_spec(spec)
        results.append(
            run(
                recipe,
                streams,
                far,
                memory_items=args.memory_items,
                seed=args.seed,
                share=args.share,
            )
        )
    body = describe(args, streams, far) + "\n\n" + table(results)
    body += "\n\nNear-novel AUROC after each experience:\n\n" + per_cut(results)
    print(body)  # noqa: T201
    if args.out is not None:
        title = {"fashion": "Split-Fashion-MNIST", "digits": "digits"}[args.stream]
        title += " (validation)" if args.validation else ""
        title += f", {args.folds} folds pooled" if args.folds else ""
        heading = HEADING.format(name=title)
        write_section(args.out, body, heading)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
