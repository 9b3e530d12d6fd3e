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
"""

from __future__ import annotations

import argparse
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecl.bench.cl import build
from edgecl.bench.recipes import Recipe, parse_spec
from edgecl.bench.report import machine, write_section
from edgecl.bench.streams import SPLIT_FASHION, STREAMS, ClassIncrementalStream, Latents
from edgecl.calibration import auroc, ece, nll, softmax_t
from edgecl.learner import Learner
from edgecl.openset import OpenPrediction, logits
from edgecl.probe import ProbeSet
from edgecl.types import FloatArray, IntArray

log = logging.getLogger("edgecl.bench")
DEFAULT = "slda,ncm,latent_replay,gdumb"
HEADING = "## Calibration and open set: {name}"


@dataclass
class OpenResult:
    """What one strategy's calibration and novelty scores gave on one stream."""

    label: str
    accuracy: float
    ece_raw: float
    ece: float
    nll_raw: float
    nll: float
    temperature: float
    near: list[float]  # AUROC after each experience but the last
    far: float
    accepted: float  # known test images under the fitted threshold, after the last
    near_flagged: list[float]  # unknown (later-class) images over it, per cut
    far_flagged: float
    held: int
    notes: list[str] = field(default_factory=list)


def predict(learner: Learner, z: FloatArray, chunk: int = 1000) -> OpenPrediction:
    """:meth:`edgecl.Learner.predict_open` over ``z`` a chunk at a time."""
    parts = [learner.predict_open(z[s : s + chunk]) for s in range(0, len(z), chunk)]
    return OpenPrediction(
        np.concatenate([p.proba for p in parts]),
        np.concatenate([p.novelty for p in parts]),
        np.concatenate([p.unknown for p in parts]),
        parts[0].threshold,
    )


def indices(learner: Learner, y: IntArray) -> IntArray:
    """The learner's class index of each stream label."""
    return np.array([learner.labels.index(int(c)) for c in y], dtype=np.int64)


def run(
    recipe: Recipe,
    stream: ClassIncrementalStream,
    far: Latents,
    *,
    memory_items: int = 1500,
    seed: int = 0,
    share: float = 0.05,
) -> OpenResult:
    """Learn ``stream`` once with ``recipe`` through a probe; calibration and AUROCs."""
    learner = build(recipe, stream.latent_shape, memory_items, seed)
    learner.probe = ProbeSet(share=share, seed=seed)  # else the daemon's defaults
    near, near_flagged = [], []
    last = len(stream.classes) - 1
    for i, exp in enumerate(stream.experiences()):
        for s in range(0, len(exp), recipe.batch):
            learner.learn_latents(exp.z[s : s + recipe.batch], exp.y[s : s + recipe.batch].tolist())
        if recipe.retrain:
            learner.retrain()  # swaps the head in, which re-scores and refits
        else:
            learner.rescore()
        if i < last:
            known = stream.test_seen(i)
            later = [c for classes in stream.classes[i + 1 :] for c in classes]
            unknown = stream.test.of_classes(later)
            k, u = predict(learner, known.z), predict(learner, unknown.z)
            near.append(auroc(k.novelty, u.novelty))
            near_flagged.append(float(u.unknown.mean()))
            log.info("%s: experience %d near-novel AUROC %.4f", recipe.label, i + 1, near[-1])
    test = stream.test_seen(last)
    y = indices(learner, test.y)
    answer = predict(learner, test.z)
    outside = predict(learner, far.z)
    raw = np.concatenate(
        [logits(learner.strategy, test.z[s : s + 1000]) for s in range(0, len(y), 1000)]
    )
    cal = learner.calibration
    result = OpenResult(
        recipe.label,
        accuracy=float(np.mean(answer.proba.argmax(axis=1) == y)),
        ece_raw=ece(softmax_t(raw, 1.0), y),
        ece=ece(answer.proba, y),
        nll_raw=nll(raw, y, 1.0),
        nll=nll(raw, y, cal.temperature),
        temperature=cal.temperature,
        near=near,
        far=auroc(answer.novelty, outside.novelty),
        accepted=float(1.0 - answer.unknown.mean()),
        near_flagged=near_flagged,
        far_flagged=float(outside.unknown.mean()),
        held=learner.probe.held,
    )
    if cal.status != "fitted":
        result.notes.append(f"calibration {cal.status}: {cal.reason}")
    log.info("%s: %s", recipe.label, result)
    return result


def table(results: list[OpenResult]) -> str:
    """One row per strategy.

    >>> r = OpenResult("ncm", 0.8, 0.2, 0.03, 0.9, 0.6, 0.5, [0.9, 0.8], 0.97, 0.95,
    ...                [0.4, 0.3], 0.9, 100)
    >>> print(table([r]).splitlines()[2])
    | `ncm` | 80.0 | 0.200 | **0.030** | 0.90 | 0.60 | 0.5 | 100 | **0.850** (0.800) | **0.970** | 95.0 | 35.0 | 90.0 |  |
    """  # noqa: E501
    lines = [
        "| strategy | accuracy | ECE T=1 | ECE | NLL T=1 | NLL | T | probe items "
        "| near AUROC mean (min) | far AUROC | known accepted % | near flagged % "
        "| far flagged % | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |",
    ]
    for r in results:
        cells = [
            f"`{r.label}`",
            f"{100 * r.accuracy:.1f}",
            f"{r.ece_raw:.3f}",
            f"**{r.ece:.3f}**",
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


def command(args: argparse.Namespace) -> str:
    """The flags that change the figures (the data folder does not)."""
    flags = ["--stream", args.stream, "--strategies", args.strategies]
    flags += ["--validation"] if args.validation else []
    for flag, value, default in (
        ("--limit-train", args.limit_train, None),
        ("--memory-items", args.memory_items, 1500),
        ("--share", args.share, 0.05),
        ("--seed", args.seed, 0),
    ):
        flags += [] if value == default else [flag, str(value)]
    return shlex.join([*flags, "--out", "BENCHMARKS.md"])


def describe(args: argparse.Namespace, stream: ClassIncrementalStream, far: Latents) -> str:
    """The paragraph above the tables: command, data, machine, what the columns mean."""
    name, other = args.stream, OTHER[args.stream]
    default = " as the daemon does" if args.share == 0.05 else " (the daemon: 5%)"
    where = "a held-out fifth of the training images" if args.validation else "the test images"
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
        f"on {where} ({len(stream.test)}); far-novel: {len(far)} images of {STREAMS[other]}. "
        "*Accuracy*, *ECE* (15 bins), *NLL*: over all ten classes after the last experience, "
        "before (T=1) and after temperature scaling. *Near AUROC*: after experience k = 1..4, "
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
    p.add_argument("--out", type=Path, default=None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run_args(p.parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    from edgecl.bench.streams import fashion_latents

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
    if args.validation:
        train, test = split(train, args.seed)
    stream = ClassIncrementalStream(train, test, SPLIT_FASHION, args.seed)
    results = []
    for spec in args.strategies.split(","):
        results.append(
            run(parse_spec(spec), stream, far, memory_items=args.memory_items, share=args.share)
        )
    body = describe(args, stream, far) + "\n\n" + table(results)
    body += "\n\nNear-novel AUROC after each experience:\n\n" + per_cut(results)
    print(body)  # noqa: T201
    if args.out is not None:
        title = {"fashion": "Split-Fashion-MNIST", "digits": "digits"}[args.stream]
        heading = HEADING.format(name=title + (" (validation)" if args.validation else ""))
        write_section(args.out, body, heading)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
