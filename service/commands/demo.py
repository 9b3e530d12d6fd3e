"""``edgecl demo``: a class-incremental Fashion-MNIST stream through a learner."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecl import Learner, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.datasets import FASHION_CLASSES, Split, load_fixture
from edgecl.protocols import Backbone
from edgecl.types import FloatArray

EXPERIENCES = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
QUICK = 20  # training images per class with --quick
#: Images (learned or tested) per second over a whole run: 2500 took 75 s on a busy 2-core
#: x86 desktop, and about 11 minutes on a newcomer's small machine.
PACE = {"a desktop CPU": 33.0, "a small board": 3.8}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="learn Fashion-MNIST two classes at a time and print accuracy on all seen classes",
        description=(
            "Streams the committed Fashion-MNIST fixture (200 training and 50 held-out images "
            "per class) as 5 experiences of 2 new classes each, and after each experience "
            "prints accuracy on the held-out images of every class seen so far. All 2500 "
            "images go through the int8 backbone once: about a minute on a desktop CPU, up to "
            "about 11 minutes on a small or busy one; --quick takes a tenth of that. Progress "
            "and the time left go to stderr."
        ),
    )
    p.add_argument("--strategy", default="slda", help="strategy name (default: slda)")
    p.add_argument(
        "--backbone",
        choices=["onnx", "pixels"],
        default="onnx",
        help="onnx: the int8 EfficientNet-Lite0 (built on first use); pixels: raw pixels",
    )
    p.add_argument(
        "--data-dir",
        default="edgecl-data",
        help="where the int8 backbone is built and kept (default: ./edgecl-data)",
    )
    p.add_argument("--store-bytes", type=int, default=2 << 20, help="replay budget in bytes")
    p.add_argument("--batch", type=int, default=10, help="samples per learn call")
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="learn only the first N training images of each class (of 200), and test on a "
        "quarter as many held-out ones (of 50)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"same as --limit {QUICK}: the whole stream in a tenth of the time",
    )
    p.set_defaults(run=run)


def make_backbone(args: argparse.Namespace) -> tuple[Backbone, Any]:
    """The backbone and a function turning uint8 images into its inputs."""
    if args.backbone == "pixels":
        return IdentityBackbone(28 * 28), lambda im: im.reshape(len(im), -1) / 255.0
    from edgecl.backbones import OnnxBackbone
    from edgecl.backbones.build import ensure_backbone

    manifest = ensure_backbone(Path(args.data_dir) / "backbone")
    # The backbone takes uint8 image batches as they are: grayscale becomes RGB, resized.
    return OnnxBackbone.from_manifest(manifest), lambda im: im


def first_of_each_class(split: Split, n: int | None) -> Split:
    """The first ``n`` images of each class (all with ``None``), in their order."""
    if n is None:
        return split
    keep = np.zeros(len(split.labels), dtype=bool)
    for c in np.unique(split.labels):
        keep[np.flatnonzero(split.labels == c)[:n]] = True
    return Split(split.images[keep], split.labels[keep])


def clock(seconds: float) -> str:
    """``m:ss``.

    >>> clock(75.4), clock(3600)
    ('1:15', '60:00')
    """
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


class Progress:
    """Images through the backbone so far, out of ``total``, with elapsed time and what is
    left at the pace so far; on a terminal also a bar on ``stream``, redrawn in place."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.live = stream.isatty()
        self.start = time.monotonic()
        self.drawn = 0.0
        self.label = ""

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def status(self) -> str:
        """``0:41 elapsed, about 0:45 left`` (just the elapsed time once all are done)."""
        if self.done == 0 or self.done >= self.total:
            return f"{clock(self.elapsed)} elapsed"
        left = self.elapsed * (self.total - self.done) / self.done
        return f"{clock(self.elapsed)} elapsed, about {clock(left)} left"

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.live and (now - self.drawn > 0.1 or self.done == self.total):
            self.drawn = now
            filled = 30 * self.done // max(self.total, 1)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}"
                f" images, {self.status()}\033[K"
            )
            self.stream.flush()

    def clear(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    if args.strategy not in strategies.names():
        raise ValueError(f"unknown strategy {args.strategy!r}; choose one of {strategies.names()}")
    if args.batch < 1:
        raise ValueError("--batch must be at least 1")
    limit = QUICK if args.quick else args.limit
    if limit is not None and limit < 4:
        raise ValueError("--limit must be at least 4 (a quarter as many are tested)")
    train, test = load_fixture()
    train = first_of_each_class(train, limit)
    test = first_of_each_class(test, None if limit is None else limit // 4)
    total = len(train.labels) + len(test.labels)
    if args.backbone == "onnx":
        (fast, quick), (slow, slowly) = PACE.items()
        how = "int8 EfficientNet-Lite0"
        took = f"; about {clock(total / quick)} on {fast}, up to {clock(total / slowly)} on {slow}"
    else:
        how, took = "raw-pixel", ""
    print(  # noqa: T201
        f"edgecl demo: learns Fashion-MNIST two classes at a time (5 experiences, "
        f"{len(train.labels)} training images, each seen once) with strategy {args.strategy} "
        f"on the {how} backbone, and after each experience tests on the held-out images of "
        f"the classes seen so far ({len(test.labels)}). {total} images in all{took}.",
        flush=True,
    )
    backbone, to_input = make_backbone(args)
    store = replay.create("class_balanced", max_bytes=args.store_bytes)
    learner = Learner(backbone, strategies.create(args.strategy), store)
    progress = Progress(total, sys.stderr)
    seen: list[int] = []
    tested: list[FloatArray] = []  # each class's held-out images, embedded once
    truth: list[str] = []
    for exp, classes in enumerate(EXPERIENCES, start=1):
        progress.label = f"experience {exp}/{len(EXPERIENCES)}"
        part = train.classes(classes)
        start = time.perf_counter()
        for i in range(0, len(part.labels), args.batch):
            names = [FASHION_CLASSES[c] for c in part.labels[i : i + args.batch]]
            learner.learn_many(to_input(part.images[i : i + args.batch]), names)
            progress.advance(len(names))
        elapsed = time.perf_counter() - start
        seen.extend(classes)
        new = test.classes(classes)
        for i in range(0, len(new.labels), 50):
            tested.append(learner.embed(to_input(new.images[i : i + 50])))
            truth.extend(FASHION_CLASSES[c] for c in new.labels[i : i + 50])
            progress.advance(len(new.labels[i : i + 50]))
        acc = _accuracy(learner, np.concatenate(tested), truth)
        progress.clear()
        names_new = ", ".join(FASHION_CLASSES[c] for c in classes)
        print(  # noqa: T201
            f"experience {exp}/{len(EXPERIENCES)}: learned {names_new} ({len(part.labels)} "
            f"samples, {len(part.labels) / elapsed:.0f} samples/s); accuracy on {len(seen)} "
            f"seen classes: {acc:.3f} [{progress.status()}]",
            flush=True,
        )
    return 0


def _accuracy(learner: Learner, z: FloatArray, truth: list[str]) -> float:
    predicted = np.argmax(learner.predict_proba_latents(z), axis=1)
    hits = [learner.labels.decode(int(p)) == t for p, t in zip(predicted, truth, strict=True)]
    return float(np.mean(hits))
