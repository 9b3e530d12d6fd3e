"""Draw the committed Fashion-MNIST fixture from the full set (run once; output is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecl.datasets import load_full

TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 50


def main() -> None:
    train, test = load_full()
    rng = np.random.default_rng(20261128)
    parts: dict[str, np.ndarray] = {}
    for name, split, n in (("train", train, TRAIN_PER_CLASS), ("test", test, TEST_PER_CLASS)):
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(split.labels == c), n, replace=False) for c in range(10)]
        )
        idx = idx[rng.permutation(len(idx))]
        parts[f"{name}_images"] = split.images[idx]
        parts[f"{name}_labels"] = split.labels[idx].astype(np.uint8)
    out = Path(__file__).resolve().parents[1] / "edgecl" / "data" / "fashion_mnist_fixture.npz"
    np.savez_compressed(out, **parts)
    print(f"wrote {out} ({out.stat().st_size} bytes)")  # noqa: T201


if __name__ == "__main__":
    main()
