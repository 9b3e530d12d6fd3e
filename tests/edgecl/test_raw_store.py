"""Raw-image replay on the real backbone: what an lz4 store keeps, how replay embeds it again,
and how a learner moves to another backbone (``edgecl.reembed``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecl import Learner, replay, strategies
from edgecl.backbones import BackboneChangedError, OnnxBackbone
from edgecl.codec import packb
from edgecl.datasets import Split, load_fixture
from edgecl.reembed import reembed

CLASSES = [0, 1, 7, 8]  # t-shirt, trouser, sneaker, bag


@pytest.fixture(scope="module")
def int8(backbone_manifest: Path) -> OnnxBackbone:
    return OnnxBackbone.from_manifest(backbone_manifest)


@pytest.fixture(scope="module")
def fp32(backbone_manifest: Path, int8: OnnxBackbone) -> OnnxBackbone:
    """The same network unquantized: another model file, so another backbone."""
    return OnnxBackbone(backbone_manifest.parent / "model.fp32.onnx", mean=int8.mean, std=int8.std)


@pytest.fixture(scope="module")
def data() -> tuple[Split, Split]:
    train, test = load_fixture()
    rng = np.random.default_rng(0)
    part = train.classes(CLASSES)
    picked = np.concatenate(
        [rng.choice(np.flatnonzero(part.labels == c), 30, replace=False) for c in CLASSES]
    )
    rng.shuffle(picked)
    return Split(part.images[picked], part.labels[picked]), test.classes(CLASSES)


def raw_learner(backbone: OnnxBackbone, strategy: str = "latent_replay") -> Learner:
    store = replay.create("class_balanced", max_bytes=8 << 20, encoding="lz4", seed=0)
    options = {"replay_size": 8} if strategy == "latent_replay" else {}
    return Learner(backbone, strategies.create(strategy, **options), store)


def learn(learner: Learner, split: Split) -> None:
    for start in range(0, len(split.labels), 10):
        part = slice(start, start + 10)
        learner.learn_many(split.images[part], split.labels[part].tolist())


def accuracy(learner: Learner, split: Split) -> float:
    predicted = learner.predict_many(split.images)
    return float(np.mean(np.array(predicted) == split.labels))


def test_the_store_keeps_prepared_images_and_replay_embeds_them_exactly(
    int8: OnnxBackbone, data: tuple[Split, Split]
) -> None:
    train, test = data
    learner = raw_learner(int8)
    learn(learner, train)
    store = learner.store
    assert store is not None and learner.keeps_inputs
    items, labels = store.items()
    assert items.shape[1:] == (224, 224, 3) and len(items) == len(train.labels)
    assert np.array_equal(items, np.round(items)) and items.min() >= 0 and items.max() <= 255
    # lz4 frames, counted in the budget: well under the 150 KB of a raw 224x224x3 image.
    assert store.nbytes <= store.max_bytes
    assert store.nbytes / len(store) < 224 * 224 * 3 / 2
    # Embedding what the store holds gives back each training image's latent exactly.
    z_memory, y_memory = learner.memory_latents()
    z_train = int8.embed(train.images)
    for z, y in zip(z_memory, y_memory, strict=True):
        nearest = int(np.argmin(np.abs(z_train - z).max(axis=1)))
        assert np.abs(z_train[nearest] - z).max() < 1e-5
        assert train.labels[nearest] == learner.labels.decode(int(y))
    assert accuracy(learner, test) > 0.85


def test_latents_without_their_images_are_refused_and_change_nothing(
    int8: OnnxBackbone, data: tuple[Split, Split]
) -> None:
    train, _ = data
    learner = raw_learner(int8)
    learn(learner, Split(train.images[:20], train.labels[:20]))
    before = packb(learner.state_dict())
    z = int8.embed(train.images[20:24])
    with pytest.raises(ValueError, match="keeps raw inputs"):
        learner.learn_latents(z, train.labels[20:24].tolist())
    with pytest.raises(ValueError, match="integers in 0..255"):
        learner.learn_latents(
            z, train.labels[20:24].tolist(), inputs=np.full((4, 224, 224, 3), 0.5)
        )
    assert packb(learner.state_dict()) == before


def test_a_state_does_not_load_on_another_backbone(
    int8: OnnxBackbone, fp32: OnnxBackbone, data: tuple[Split, Split], tmp_path: Path
) -> None:
    train, _ = data
    learner = raw_learner(int8, "ncm")
    learn(learner, Split(train.images[:20], train.labels[:20]))
    learner.save(tmp_path / "model.edgecl")
    assert Learner.load(tmp_path / "model.edgecl", backbone=int8).samples_learned == 20
    with pytest.raises(BackboneChangedError, match="store reembed"):
        Learner.load(tmp_path / "model.edgecl", backbone=fp32)


def test_reembed_moves_the_memory_and_the_head_to_another_backbone(
    int8: OnnxBackbone, fp32: OnnxBackbone, data: tuple[Split, Split]
) -> None:
    train, test = data
    old = raw_learner(int8, "ncm")
    learn(old, train)
    new = reembed(old.state_dict(), fp32)
    assert new.backbone is fp32 and new.model_version == old.model_version + 1
    assert new.labels.labels == old.labels.labels and new.samples_learned == old.samples_learned
    # The memory holds every training image, so the new head is the one ncm learns from
    # their fp32 latents directly.
    direct = Learner(fp32, strategies.create("ncm"))
    direct.learn_many(train.images, train.labels.tolist())
    z = fp32.embed(test.images)
    proba = new.predict_proba_latents(z)
    assert np.allclose(proba, direct.predict_proba_latents(z), atol=1e-5)
    predicted = [new.labels.decode(int(i)) for i in proba.argmax(axis=1)]
    assert float(np.mean(np.array(predicted) == test.labels)) > 0.85
    # And it keeps learning on the new backbone.
    new.learn_many(test.images[:5], test.labels[:5].tolist())
    assert new.samples_learned == old.samples_learned + 5


def test_a_latent_store_cannot_be_reembedded(
    int8: OnnxBackbone, fp32: OnnxBackbone, data: tuple[Split, Split]
) -> None:
    train, _ = data
    store = replay.create("class_balanced", max_bytes=1 << 20, encoding="int8")
    learner = Learner(int8, strategies.create("ncm"), store)
    learn(learner, Split(train.images[:20], train.labels[:20]))
    with pytest.raises(ValueError, match="cannot be embedded again"):
        reembed(learner.state_dict(), fp32)


def test_gdumb_retrains_from_raw_images(int8: OnnxBackbone, data: tuple[Split, Split]) -> None:
    import threading

    from service.retrain import snapshot_memory

    train, test = data
    learner = raw_learner(int8, "gdumb")
    learn(learner, train)
    z, y = snapshot_memory(learner, threading.Lock())  # what the daemon's /retrain uses
    z_direct, y_direct = learner.memory_latents()
    assert np.array_equal(y, y_direct) and np.allclose(z, z_direct)
    version = learner.model_version
    assert learner.retrain() and learner.model_version == version + 1
    assert accuracy(learner, test) > 0.85
