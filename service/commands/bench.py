"""``edgecl bench cl``: strategies on Split-Fashion-MNIST latents, written to BENCHMARKS.md;
``edgecl bench tuned``: any class layout with learning rates chosen on validation;
``edgecl bench openset``: their calibration and open-set figures;
``edgecl bench tasks``: each experience a task, given at test time or inferred."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.bench.cl import Result, joint, run
from edgecl.bench.open_measure import OpenMeter, summarise
from edgecl.bench.openset import OTHER
from edgecl.bench.recipes import RECIPES, Recipe, parse_spec
from edgecl.bench.report import HEADING, comparisons, machine, table, write_section
from edgecl.bench.streams import (
    SPLIT_FASHION,
    STREAMS,
    ClassIncrementalStream,
    Latents,
    fashion_latents,
)

DEFAULT_STRATEGIES = "naive,latent_replay,cwr_star,ar1,exstream,gdumb,slda,ncm"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmarks", description="Benchmarks.")
    kinds = p.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    cl = kinds.add_parser(
        "cl",
        help="continual-learning strategies on Split-Fashion-MNIST latents",
        description=(
            "Learns Fashion-MNIST as 5 experiences of 2 new classes (order 0..9), one pass, "
            "from int8 EfficientNet-Lite0 latents (built and cached on first use; embedding "
            "70k images takes minutes), and reports accuracy on the classes seen after each "
            "experience, memory and learning speed. A strategy is name[@encoding]"
            "[:option=value...], e.g. gdumb@float32 or ar1:epochs=2."
        ),
    )
    cl.add_argument("--strategies", default=DEFAULT_STRATEGIES, help="comma-separated list")
    cl.add_argument("--memory-items", type=int, default=1500, help="replay memory, in latents")
    cl.add_argument("--limit-train", type=int, default=None, help="use the first N train images")
    cl.add_argument("--limit-test", type=int, default=None, help="use the first N test images")
    cl.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the section into this file (a '### Notes' part of it is kept)",
    )
    cl.add_argument("--no-joint", action="store_true", help="skip the offline upper bound")
    cl.add_argument("--data-dir", type=Path, default=Path("edgecl-data"))
    cl.add_argument("--cache-dir", type=Path, default=None, help="default: DATA_DIR/bench")
    cl.add_argument("--backbone-dir", type=Path, default=None, help="default: DATA_DIR/backbone")
    cl.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for embedding")
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument(
        "--probe-share",
        type=float,
        default=0.05,
        help="share held back in a probe, as the daemon does, on which calibration is "
        "fitted (0: none, and no ECE or AUROC columns)",
    )
    cl.add_argument(
        "--stream",
        choices=sorted(STREAMS),
        default="fashion",
        help="images: " + "; ".join(f"{k}: {v}" for k, v in STREAMS.items()),
    )
    cl.set_defaults(run=run_cl)
    from edgecl.bench import openset, tasks
    from edgecl.bench import run_cl as tuned_cl

    tuned = kinds.add_parser(
        "tuned",
        help="strategies on any class layout (e.g. single-class experiences), each "
        "learning rate chosen on a validation split",
        description=(tuned_cl.__doc__ or "").split("\n\n")[0],
    )
    tuned_cl.add_arguments(tuned)
    tuned.set_defaults(run=tuned_cl.run_args)

    parser = kinds.add_parser(
        "openset",
        help="calibration (ECE) and open-set AUROC, near- and far-novel, per strategy",
        description=openset.__doc__.split("\n\n")[0] if openset.__doc__ else None,
    )
    openset.add_arguments(parser)
    parser.set_defaults(run=openset.run_args)

    parser = kinds.add_parser(
        "tasks",
        help="task-incremental: each experience a task, given at test time or inferred",
        description=(tasks.__doc__ or "").split("\n\n")[0],
    )
    tasks.add_arguments(parser)
    parser.set_defaults(run=tasks.run_args)


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


def run_cl(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipes = [parse_spec(s) for s in args.strategies.split(",") if s.strip()]
    if args.memory_items < 1:
        raise ValueError("--memory-items must be at least 1")
    cache = args.cache_dir or args.data_dir / "bench"
    backbones = args.backbone_dir or args.data_dir / "backbone"
    streams: dict[str, tuple[ClassIncrementalStream, Path]] = {}

    def stream_at(cut: str) -> tuple[ClassIncrementalStream, Path]:
        if cut not in streams:
            train, test, manifest = fashion_latents(
                cache,
                backbones,
                cut,
                limit_train=args.limit_train,
                limit_test=args.limit_test,
                threads=args.threads,
                stream=args.stream,
            )
            streams[cut] = ClassIncrementalStream(train, test, SPLIT_FASHION, args.seed), manifest
        return streams[cut]

    if not 0.0 <= args.probe_share < 1.0:
        raise ValueError(f"--probe-share must be in [0, 1), got {args.probe_share}")
    far = far_novel(args, cache, backbones) if args.probe_share else None
    started = machine()
    results: list[Result] = []
    for recipe in recipes:
        stream, manifest = stream_at(recipe.cut)
        if recipe.strategy == "ar1":
            recipe = replace(recipe, options={"top": str(manifest), **recipe.options})
        t = time.perf_counter()
        # Far-novel images are at hand as pooled latents only; `joint` has no learner.
        meter = None
        if args.probe_share and recipe.strategy != "joint":
            meter = OpenMeter(stream, far if recipe.cut == "pooled" else None)
        result = run(
            recipe,
            stream,
            memory_items=args.memory_items,
            seed=args.seed,
            probe_share=args.probe_share,
            observe=meter.after if meter else None,
        )
        if meter:
            found = summarise(recipe.label, [meter])
            result.open = (found.ece, float(np.mean(found.near)), found.far)
        if recipe.cut != "pooled":
            result.notes.insert(0, f"latents at `{recipe.cut}`")
        results.append(result)
        _say(
            f"{result.label}: {[round(a, 4) for a in result.accuracies]} "
            f"({time.perf_counter() - t:.0f} s)"
        )
    if not args.no_joint:
        results.append(joint(stream_at("pooled")[0], seed=args.seed))
    stream = stream_at("pooled")[0]
    body = describe(args, recipes, stream, started) + "\n\n" + table(results, len(SPLIT_FASHION))
    notes = comparisons(results)
    if notes:
        body += "\n\n" + "\n".join(f"- {line}" for line in notes)
    _say(body)
    if args.out is not None:
        # Each stream its own section (the heading names Split-Fashion-MNIST otherwise).
        heading = HEADING
        if args.stream != "fashion":
            heading = f"## {args.stream.capitalize()}, class-incremental (strategies)"
        write_section(args.out, body, heading)
    return 0


def far_novel(args: argparse.Namespace, cache: Path, backbones: Path) -> Latents:
    """The other domain's test images (digits for Fashion-MNIST, else Fashion-MNIST)."""
    other = OTHER[args.stream]
    return fashion_latents(cache, backbones, "pooled", limit_train=10000, stream=other)[1]


def describe(
    args: argparse.Namespace,
    recipes: list[Recipe],
    stream: ClassIncrementalStream,
    started: str,
) -> str:
    """The paragraph above the table: command, data, machine, what each column means."""
    command = f"edgecl bench cl --strategies {','.join(r.label for r in recipes)}"
    name = getattr(args, "stream", "fashion")
    if name != "fashion":
        command += f" --stream {name}"
    if args.memory_items != 1500:
        command += f" --memory-items {args.memory_items}"
    for flag in ("limit_train", "limit_test"):
        if getattr(args, flag) is not None:
            command += f" --{flag.replace('_', '-')} {getattr(args, flag)}"
    share = getattr(args, "probe_share", 0.0)
    if share != 0.05:
        command += f" --probe-share {share:g}"
    batches = ", ".join(
        f"`{name}` {RECIPES[name].batch}" for name in sorted({r.strategy for r in recipes})
    )
    return (
        (
            f"Command: `OPENBLAS_NUM_THREADS=1 {command} --out BENCHMARKS.md`\n\n"
            f"Machine: {started}.\n\n"
            f"Stream: {len(stream.train)} training and {len(stream.test)} test images of "
            f"{STREAMS[name]} as 5 experiences of 2 new classes (class order 0..9), each sample "
            "learned once, embedded once by the int8 EfficientNet-Lite0 backbone (pooled 1280-d "
            "latents unless the notes say otherwise). Columns *exp k*: accuracy (%) on the test "
            "images of every class seen after experience *k*; the last is over all ten classes. "
            f"Replay memory: {args.memory_items} latents per strategy (int8 unless the name says "
            "`@float32`; `@pq` keeps the bytes of that many int8 latents), in the store of each "
            "strategy's paper. *Learn samples/s*: training samples over the wall time of the "
            "learn calls (which include the learner's test-then-train prediction of each batch, "
            f"and GDumb's retrains). Batch sizes fed to the learner: {batches}."
        )
        + _open_sentence(share)
        + _ar1_sentence(next((r for r in recipes if r.strategy == "ar1"), None))
    )


def _open_sentence(share: float) -> str:
    if not share:
        return ""
    return (
        f" Each strategy learns through a probe holding back {share:.0%} of the samples "
        "(as the daemon does), on whose items its temperature and novelty threshold are "
        "fitted (`edgecl bench openset` has the details): *ECE* (15 bins) of its calibrated "
        "probabilities over every test image after the last experience; *near AUROC*: after "
        "each experience but the last, the novelty of the test images of the classes known "
        "against those of later classes, mean over the four; *far AUROC*: after the last, "
        "the stream's test images against another domain's (digits for Fashion-MNIST, "
        "Fashion-MNIST for digits)."
    )


def _ar1_sentence(recipe: Recipe | None) -> str:
    if recipe is None:
        return ""
    return (
        f" `{recipe.label}` learns from latents at the `{recipe.cut}` cut (its replay memory "
        "holds latents there); the layers above the cut, initialised from the pretrained "
        "weights, train (batch normalisation frozen; Synaptic Intelligence only if "
        "`si_lambda` is set, 0 by default as in the reference) under CWR* on the output "
        "layer; its replay ratio and epochs are in its notes."
    )
