"""Raw-image replay (store encoding ``lz4``) against int8 latents: bytes per held item,
accuracy and learn rate on the same stream, and the time to re-embed a memory.

Run from the repository root (about 3-5 minutes on 2 cores):

    OPENBLAS_NUM_THREADS=1 nice -n 5 python -m benchmarks.raw_store

It rewrites the "Raw-image replay store" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_common import backbone_dir, machine_line, write_section
from edgecl import Learner, replay, strategies
from edgecl.backbones import OnnxBackbone
from edgecl.backbones.preprocess import decode_image
from edgecl.datasets import Split, load_fixture
from edgecl.reembed import reembed

HEADING = "## Raw-image replay store"
COMMAND = "OPENBLAS_NUM_THREADS=1 nice -n 5 python -m benchmarks.raw_store"
INT8_ITEM = 1292  # a 1280-d int8 latent: codes, scale, label
BUDGET = 16 << 20  # the daemon's default store budget


def photos() -> list[np.ndarray[Any, Any]]:
    """The committed calibration photographs (not the Fashion-MNIST ones), decoded."""
    folder = resources.files("edgecl") / "data" / "calibration"
    found = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found += [e for e in entry.iterdir() if e.name.endswith((".jpg", ".png"))]
        elif entry.name.startswith("photo-"):
            found.append(entry)
    return [decode_image(e.read_bytes()) for e in sorted(found, key=lambda e: e.name)]


def lz4_bytes(backbone: OnnxBackbone, images: Any) -> float:
    """Mean bytes per item of ``images`` held in an lz4 store (after ``prepare``)."""
    store = replay.create("reservoir", max_bytes=1 << 30, encoding="lz4")
    prepared = np.concatenate([backbone.prepare([img]) for img in images])
    store.add_many(prepared, np.zeros(len(prepared), np.int64))
    return store.nbytes / len(store)


def stream(train: Split) -> list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """Class-incremental: 5 experiences of 2 classes, batches of 10, shuffled within."""
    rng = np.random.default_rng(0)
    batches = []
    for first in range(0, 10, 2):
        part = train.classes([first, first + 1])
        order = rng.permutation(len(part.labels))
        for start in range(0, len(order), 10):
            rows = order[start : start + 10]
            batches.append((part.images[rows], part.labels[rows]))
    return batches


def run(
    backbone: OnnxBackbone, encoding: str, max_bytes: int, data: tuple[Split, Split]
) -> dict[str, Any]:
    train, test = data
    store = replay.create("class_balanced", max_bytes=max_bytes, encoding=encoding, seed=0)
    learner = Learner(backbone, strategies.create("latent_replay"), store)
    start = time.perf_counter()
    for x, y in stream(train):
        learner.learn_many(x, y.tolist())
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(np.array(learner.predict_many(test.images)) == test.labels))
    row = {
        "encoding": encoding,
        "max_bytes": max_bytes,
        "items": len(store),
        "per_item": store.nbytes / max(len(store), 1),
        "accuracy": accuracy,
        "rate": len(train.labels) / seconds,
        "learner": learner,
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone-dir", type=Path, help="folder of backbone builds")
    parser.add_argument("--items", type=int, default=300, help="memory size in items")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    machine = machine_line()
    folder = backbone_dir(args.backbone_dir)
    backbone = OnnxBackbone.from_manifest(folder / "efficientnet-lite0-pooled" / "manifest.json")
    data = load_fixture()
    fashion = lz4_bytes(backbone, data[0].images[:500])
    pictures = photos()
    photo = lz4_bytes(backbone, pictures)

    lz4_item = int(np.ceil(fashion * 1.1))  # room for the larger frames
    runs = [
        run(backbone, "int8", args.items * INT8_ITEM, data),
        run(backbone, "lz4", args.items * lz4_item, data),
        run(backbone, "lz4", args.items * INT8_ITEM, data),
    ]
    raw_learner: Learner = runs[1]["learner"]
    start = time.perf_counter()
    moved = reembed(raw_learner.state_dict(), backbone)
    seconds = time.perf_counter() - start
    assert moved.store is not None
    n_moved = len(moved.store)

    lines = [
        HEADING,
        "",
        f"Command: `{COMMAND}`",
        "",
        f"Machine: {machine}.",
        "",
        "A store with `encoding: lz4` keeps each sample as the backbone sees it (224x224 RGB "
        "uint8, one lz4 frame) and embeds it again whenever it is replayed; an int8 store keeps "
        "the 1280-d latent. *Bytes per item* is what `nbytes` counts (frame, 48 B object "
        "overhead, 8 B label).",
        "",
        "| items | bytes per item | items in the default 16 MiB |",
        "| --- | ---: | ---: |",
        f"| int8 latent (1280-d) | {INT8_ITEM} | {BUDGET // INT8_ITEM} |",
        f"| Fashion-MNIST image, lz4 (28x28 gray, upscaled) | {fashion:.0f} "
        f"| {int(BUDGET // fashion)} |",
        f"| photograph, lz4 ({len(pictures)} committed calibration photos) | {photo:.0f} "
        f"| {int(BUDGET // photo)} |",
        "",
        "Learning: `latent_replay` (32 replayed per batch) on the Fashion-MNIST fixture as 5 "
        "experiences of 2 classes (2000 training images in batches of 10, 500 test images), "
        f"`class_balanced` store. *Same items*: room for about {args.items} items of each kind "
        "(for lz4, 1.1 times the mean item, as frames vary); "
        f"*same bytes*: the bytes of {args.items} int8 latents. Learn samples/s include "
        "embedding the new images and, for lz4, the replayed ones.",
        "",
        "| store | budget | items held | bytes per item | final accuracy | learn samples/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = ["int8 latents", "lz4 images, same items", "lz4 images, same bytes"]
    for name, r in zip(names, runs, strict=True):
        lines.append(
            f"| {name} | {r['max_bytes'] / 2**20:.2f} MiB | {r['items']} | {r['per_item']:.0f} "
            f"| {100 * r['accuracy']:.1f}% | {r['rate']:.1f} |"
        )
    lines += [
        "",
        f"Re-embedding (`edgecl.reembed.reembed`, what `edgecl store reembed` runs): the "
        f"{n_moved} images of the *same items* store through the int8 backbone and a fresh "
        f"head trained on them took {seconds:.2f} s ({1000 * seconds / max(n_moved, 1):.1f} ms "
        "per item).",
    ]
    write_section(args.out, HEADING, "\n".join(lines) + "\n")
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
