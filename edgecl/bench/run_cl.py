"""``python -m edgecl.bench.run_cl``: ``edgecl bench cl`` with the class layout and the
learning rates chosen on a validation split.

    python -m edgecl.bench.run_cl --stream digits --classes-per-experience 1 \\
        --strategies cwr_star,gdumb,exstream --out BENCHMARKS.md

Each strategy that takes ``lr`` and is not given one (``name:lr=...``; a recipe's own, as
``ar1``'s for ``edgecl bench cl``, is chosen too) has it chosen from ``--lr-grid`` on a
validation stream: the same experiences learned from 80% of each class's training samples
and tested on the other 20%; the test set is used only for the reported run. The section
is headed by the stream and its layout, so runs of different layouts sit side by side in
the file. A strategy whose recipe learns at a block cut (``ar1`` at ``block14``) gets
latents of the same images at that cut (built and embedded on first use) and the build's
layers above it; the joint bound is on the pooled latents.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from edgecl.bench.cl import Result, joint, run
from edgecl.bench.recipes import parse_spec
from edgecl.bench.report import machine, table, write_section
from edgecl.bench.streams import STREAMS, ClassIncrementalStream, fashion_latents, split_classes
from edgecl.bench.tune import LR_GRID, choose, memory_bound, takes

log = logging.getLogger("edgecl.bench")


def heading(stream: str, per_experience: int, n_experiences: int) -> str:
    """The section's heading.

    >>> heading("digits", 1, 10)
    '## Digits, class-incremental, 10 experiences of 1 class (strategies, tuned lr)'
    """
    name = "Split-Fashion-MNIST" if stream == "fashion" else stream.capitalize()
    classes = "class" if per_experience == 1 else "classes"
    return (
        f"## {name}, class-incremental, {n_experiences} experiences of {per_experience} "
        f"{classes} (strategies, tuned lr)"
    )


def named_options(spec: str) -> set[str]:
    """The options a spec names itself (not its recipe's).

    >>> sorted(named_options("ar1:lr=0.01:store.seed=2"))
    ['lr', 'store.seed']
    """
    return {pair.partition("=")[0].strip() for pair in spec.split(":")[1:]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgecl.bench.run_cl", description=__doc__)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark (also those of ``edgecl bench tuned``)."""
    p.add_argument("--strategies", default="cwr_star,gdumb,exstream")
    p.add_argument("--stream", choices=sorted(STREAMS), default="fashion")
    p.add_argument("--classes-per-experience", type=int, default=2)
    p.add_argument("--lr-grid", default=",".join(f"{v:g}" for v in LR_GRID))
    p.add_argument("--memory-items", type=int, default=1500)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--data-dir", type=Path, default=Path("edgecl-data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-joint", action="store_true")
    p.add_argument(
        "--memory-bound", action="store_true", help="add the joint trainer on gdumb's memory"
    )
    p.add_argument("--out", type=Path, default=None)


def main(argv: list[str] | None = None) -> int:
    return run_args(parser().parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    grid = tuple(float(v) for v in args.lr_grid.split(",") if v.strip())
    streams: dict[str, tuple[ClassIncrementalStream, Path]] = {}

    def stream_at(cut: str) -> tuple[ClassIncrementalStream, Path]:
        if cut not in streams:
            train, test, manifest = fashion_latents(
                args.data_dir / "bench",
                args.data_dir / "backbone",
                cut,
                limit_train=args.limit_train,
                limit_test=args.limit_test,
                stream=args.stream,
            )
            classes = split_classes(int(train.y.max()) + 1, args.classes_per_experience)
            streams[cut] = ClassIncrementalStream(train, test, classes, args.seed), manifest
        return streams[cut]

    stream = stream_at("pooled")[0]
    train, test, classes = stream.train, stream.test, stream.classes
    started = machine()
    results: list[Result] = []
    for spec in args.strategies.split(","):
        recipe = parse_spec(spec)
        if "lr" not in named_options(spec):
            recipe = replace(recipe, options={k: v for k, v in recipe.options.items() if k != "lr"})
        at, manifest = stream_at(recipe.cut)
        if recipe.cut != "pooled" and takes(recipe.strategy, "top"):
            recipe = replace(recipe, options={"top": str(manifest), **recipe.options})
        recipe, _ = choose(recipe, at, grid, memory_items=args.memory_items, seed=args.seed)
        result = run(recipe, at, memory_items=args.memory_items, seed=args.seed)
        result.label = spec.strip()
        if recipe.cut != "pooled":
            result.notes.insert(0, f"latents at `{recipe.cut}`")
        if result.by_experience:  # per experience at the end: per class when one each
            result.notes.append(
                f"lowest experience at the end {100 * min(result.by_experience[-1]):.1f}"
            )
        results.append(result)
        print(f"{result.label}: {[round(a, 4) for a in result.accuracies]}", flush=True)  # noqa: T201
    named = any(spec.split(":")[0].strip() == "joint" for spec in args.strategies.split(","))
    if not args.no_joint and not named:  # named, it sits where it was named
        results.append(joint(stream, seed=args.seed))
    if args.memory_bound:
        results.append(memory_bound(stream, memory_items=args.memory_items, seed=args.seed))
    command = " ".join(
        ["python -m edgecl.bench.run_cl", f"--stream {args.stream}"]
        + [f"--classes-per-experience {args.classes_per_experience}"]
        + [f"--strategies {args.strategies}"]
        + [f"--limit-train {args.limit_train}"] * (args.limit_train is not None)
        + [f"--limit-test {args.limit_test}"] * (args.limit_test is not None)
    )
    body = (
        f"Command: `OPENBLAS_NUM_THREADS=1 nice -n 5 {command} --out BENCHMARKS.md`\n\n"
        f"Machine: {started}.\n\n"
        f"Stream: {len(train)} training and {len(test)} test images of {STREAMS[args.stream]} "
        f"as {len(classes)} experiences of {args.classes_per_experience} new class(es), each "
        "sample learned once, int8 EfficientNet-Lite0 latents (pooled unless the notes name a "
        "cut); batches fed to the "
        "learner as in `edgecl bench cl`; memory "
        f"{args.memory_items} items. Learning rates chosen from {grid} on a validation "
        "split (80/20 of each class's training samples), never on the test set (see notes "
        "column).\n\n" + table(results, len(classes))
    )
    print(body, flush=True)  # noqa: T201
    if args.out is not None:
        write_section(
            args.out, body, heading(args.stream, args.classes_per_experience, len(classes))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
