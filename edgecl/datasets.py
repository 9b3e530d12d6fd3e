"""Fashion-MNIST: the small fixture that ships with edgecl, and the full set from disk.

The fixture is a fixed, class-balanced draw from Fashion-MNIST (MIT licence, Zalando
Research), committed so tests and the demo run offline. The full 60k/10k set is read from
Debian's ``dataset-fashion-mnist`` package for benchmarks.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

FASHION_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
FULL_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Split:
    """Images ``(N, 28, 28)`` uint8 and integer labels ``(N,)`` in 0..9."""

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]

    def classes(self, wanted: list[int] | tuple[int, ...]) -> Split:
        mask = np.isin(self.labels, wanted)
        return Split(self.images[mask], self.labels[mask])


def load_fixture() -> tuple[Split, Split]:
    """The committed fixture as ``(train, test)``.

    >>> train, test = load_fixture()
    >>> train.images.shape[1:], sorted(set(train.labels.tolist())) == list(range(10))
    ((28, 28), True)
    """
    ref = resources.files("edgecl") / "data" / "fashion_mnist_fixture.npz"
    with resources.as_file(ref) as path, np.load(path) as data:
        return (
            Split(data["train_images"], data["train_labels"].astype(np.int64)),
            Split(data["test_images"], data["test_labels"].astype(np.int64)),
        )


def _read_idx(path: Path) -> npt.NDArray[np.uint8]:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_digits(test_every: int = 4) -> tuple[Split, Split]:
    """scikit-learn's bundled handwritten digits (1797 images of 8x8, 10 classes; ships in
    the scikit-learn package, no download), as uint8 0..255; every ``test_every``-th image
    is in the test split."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        hint = "the digits stream needs scikit-learn: pip install scikit-learn"
        raise RuntimeError(hint) from None
    data = sklearn_digits()
    images = np.rint(np.asarray(data.images) * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(data.target, dtype=np.int64)
    test = np.arange(len(labels)) % test_every == 0
    return Split(images[~test], labels[~test]), Split(images[test], labels[test])


def load_full(directory: Path = FULL_DIR) -> tuple[Split, Split]:
    """The full Fashion-MNIST set (60k train, 10k test) from ``directory``."""
    if not (directory / "train-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {directory}; install Debian's dataset-fashion-mnist"
        )
    out = []
    for prefix in ("train", "t10k"):
        images = _read_idx(directory / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        out.append(Split(images, labels))
    return out[0], out[1]
