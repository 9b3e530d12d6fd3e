"""``edgecl demo``: a class-incremental Fashion-MNIST stream through a learner."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecl import Learner, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.datasets import FASHION_CLASSES, Split, load_fixture
from edgecl.protocols import Backbone


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="learn Fashion-MNIST two classes at a time and print accuracy on all seen classes",
        description=(
            "Streams the committed Fashion-MNIST fixture as 5 experiences of 2 new classes "
            "each, and after each experience prints accuracy on held-out images of every "
            "class seen so far."
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


def run(args: argparse.Namespace) -> int:
    if args.strategy not in strategies.names():
        raise ValueError(f"unknown strategy {args.strategy!r}; choose one of {strategies.names()}")
    if args.batch < 1:
        raise ValueError("--batch must be at least 1")
    train, test = load_fixture()
    backbone, to_input = make_backbone(args)
    store = replay.create("class_balanced", max_bytes=args.store_bytes)
    learner = Learner(backbone, strategies.create(args.strategy), store)
    print(f"edgecl demo: strategy={args.strategy} backbone={args.backbone}")  # noqa: T201
    seen: list[int] = []
    for exp, classes in enumerate([(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)], start=1):
        part = train.classes(classes)
        start = time.perf_counter()
        for i in range(0, len(part.labels), args.batch):
            names = [FASHION_CLASSES[c] for c in part.labels[i : i + args.batch]]
            learner.learn_many(to_input(part.images[i : i + args.batch]), names)
        elapsed = time.perf_counter() - start
        seen.extend(classes)
        acc = _accuracy(learner, test.classes(seen), to_input)
        new = ", ".join(FASHION_CLASSES[c] for c in classes)
        print(  # noqa: T201
            f"experience {exp}: learned {new} ({len(part.labels)} samples, "
            f"{len(part.labels) / elapsed:.0f} samples/s); accuracy on {len(seen)} seen "
            f"classes: {acc:.3f}"
        )
    return 0


def _accuracy(learner: Learner, split: Split, to_input: Any) -> float:
    predicted = learner.predict_many(to_input(split.images))
    truth = [FASHION_CLASSES[c] for c in split.labels]
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
