"""What each head strategy computes, and the learner saving and loading them mid-stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecl import Learner, codec, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.strategies.cwr_star import CWRStar
from edgecl.strategies.latent_replay import LatentReplay
from edgecl.strategies.linear import sgd_softmax
from edgecl.strategies.ncm import NCM
from edgecl.strategies.slda import StreamingLDA, _precision, _solve_weights
from edgecl.types import FloatArray, IntArray


def stream(n: int, dim: int, n_classes: int, seed: int = 0) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, size=n)
    z = (centres[y] + rng.normal(scale=0.5, size=(n, dim))).astype(np.float32)
    return z, y.astype(np.int64)


# -- SLDA -------------------------------------------------------------------------------
def paper_slda(z: FloatArray, y: IntArray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Hayes & Kanan's per-sample update, written out literally (first sample: no deviation)."""
    dim = z.shape[1]
    mu, counts, sigma = np.zeros((n_classes, dim)), np.zeros(n_classes), np.zeros((dim, dim))
    for t, (x, c) in enumerate(zip(z.astype(np.float64), y, strict=True)):
        d = x - mu[c] if counts[c] else np.zeros(dim)
        sigma = (t * sigma + t / (t + 1) * np.outer(d, d)) / (t + 1)
        mu[c] += (x - mu[c]) / (counts[c] + 1)
        counts[c] += 1
    return mu, sigma


def test_slda_batches_equal_the_papers_sample_by_sample_update() -> None:
    z, y = stream(60, 5, 3)
    s = StreamingLDA()
    s.add_classes(3)
    for start in (0, 1, 17, 40):  # uneven batches, a class's first sample mid-batch
        stop = {0: 1, 1: 17, 17: 40, 40: 60}[start]
        s.learn_many(z[start:stop], y[start:stop])
    mu, sigma = paper_slda(z, y, 3)
    np.testing.assert_allclose(s.means, mu, atol=1e-10)
    np.testing.assert_allclose(s.sigma, sigma, atol=1e-10)
    assert s.n_updates == 60


def test_slda_predicts_with_the_shrunk_precision() -> None:
    z, y = stream(50, 4, 3)
    s = StreamingLDA(shrinkage=0.1)
    s.add_classes(3)
    s.learn_many(z, y)
    lam = np.linalg.pinv(0.9 * s.sigma + 0.1 * np.eye(4))
    scores = z.astype(np.float64) @ lam @ s.means.T - 0.5 * np.sum(s.means @ lam * s.means, 1)
    expected = np.exp(scores - scores.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(s.predict_proba_many(z), expected, atol=1e-5)


def test_slda_recomputes_the_weights_once_per_update() -> None:
    z, y = stream(20, 4, 2)
    s = StreamingLDA()
    s.add_classes(2)
    s.learn_many(z, y)
    s.learn_many(z[:3], y[:3])
    assert s._w is None  # lazy: nothing computed while only learning
    s.predict_proba_many(z[:1])
    cached = s._w
    s.predict_proba_many(z[1:2])
    assert s._w is cached
    s.learn_many(z[:1], y[:1])  # predicted before: recomputed at once, ready for the next
    assert s._w is not None and s._w is not cached
    ready = s._w
    s.predict_proba_many(z[:1])
    assert s._w is ready
    s.add_classes(3)
    assert s._w is None


def test_slda_weights_equal_the_explicit_inverse_on_random_data() -> None:
    """The Cholesky path (block solves, a partial last block) against ``np.linalg.inv``:
    few samples in many dimensions (a rank-deficient covariance, so the default shrinkage
    1e-4 sets the smallest eigenvalues) and more samples than dimensions."""
    rng = np.random.default_rng(5)
    dim = 300
    for n in (120, 900):
        y = rng.integers(0, 6, size=n)
        protos = rng.normal(size=(6, dim))
        z = np.maximum(protos[y] + rng.normal(size=(n, dim)), 0).astype(np.float32)
        for options in ({}, {"precision_refresh": 7}):
            s = StreamingLDA(**options)
            s.add_classes(6)
            for start in range(0, n, 50):
                s.learn_many(z[start : start + 50], y[start : start + 50])
            lam = np.linalg.inv(0.9999 * s.sigma + 1e-4 * np.eye(dim))
            scores = z.astype(np.float64) @ lam @ s.means.T
            scores -= 0.5 * np.sum(s.means @ lam * s.means, axis=1)
            expected = np.exp(scores - scores.max(axis=1, keepdims=True))
            expected /= expected.sum(axis=1, keepdims=True)
            np.testing.assert_allclose(s.predict_proba_many(z), expected, atol=1e-6)
            w, b = s._weights()
            np.testing.assert_allclose(w, lam @ s.means.T, rtol=1e-8, atol=1e-8 * abs(w).max())
            np.testing.assert_allclose(b, -0.5 * np.sum(s.means @ lam * s.means, 1), rtol=1e-8)


def test_slda_falls_back_to_a_general_solve_when_cholesky_fails() -> None:
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])  # rounding can do this to a huge sigma
    mu = np.array([[1.0], [0.5]])
    w, b = _solve_weights(indefinite, mu)
    np.testing.assert_allclose(w, np.linalg.solve(indefinite, mu))
    np.testing.assert_allclose(b, -0.5 * mu[:, 0] @ w[:, 0])
    np.testing.assert_allclose(_precision(indefinite), np.linalg.inv(indefinite))


def test_slda_covariance_freezes_after_covariance_samples() -> None:
    z, y = stream(30, 4, 2)
    plastic, frozen = StreamingLDA(), StreamingLDA(covariance_samples=10)
    for s in (plastic, frozen):
        s.add_classes(2)
        s.learn_many(z[:10], y[:10])
    np.testing.assert_array_equal(plastic.sigma, frozen.sigma)
    sigma_10 = frozen.sigma.copy()
    for s in (plastic, frozen):
        s.learn_many(z[10:], y[10:])
    np.testing.assert_array_equal(frozen.sigma, sigma_10)
    assert not np.allclose(plastic.sigma, sigma_10)
    np.testing.assert_array_equal(frozen.means, plastic.means)  # means stay plastic


def test_slda_precision_refresh_reuses_the_precision_and_restores_it() -> None:
    z, y = stream(40, 4, 2)
    lazy, exact = StreamingLDA(precision_refresh=10), StreamingLDA()
    for s in (lazy, exact):
        s.add_classes(2)
        s.learn_many(z[:20], y[:20])
    np.testing.assert_allclose(lazy.predict_proba_many(z), exact.predict_proba_many(z), atol=1e-6)
    kept = lazy._lam
    for i in range(20, 29):  # nine updates: the kept precision is reused, means are fresh
        lazy.learn_many(z[i : i + 1], y[i : i + 1])
        lazy.predict_proba_many(z[:1])
        assert lazy._lam is kept
    assert lazy._lam is not None
    expected_w = lazy._lam @ lazy.means.T
    np.testing.assert_allclose(lazy._weights()[0], expected_w)
    restored = StreamingLDA(**lazy.options())
    restored.load_state_dict(codec.roundtrip(lazy.state_dict()))
    np.testing.assert_array_equal(restored.predict_proba_many(z), lazy.predict_proba_many(z))
    lazy.learn_many(z[29:30], y[29:30])  # the tenth: refreshed on the next prediction
    lazy.predict_proba_many(z[:1])
    assert lazy._lam is not kept


def test_slda_rejects_shrinkage_outside_0_1() -> None:
    with pytest.raises(ValueError, match="shrinkage"):
        StreamingLDA(shrinkage=1.5)
    with pytest.raises(ValueError, match="shrinkage"):
        StreamingLDA(shrinkage=0)


# -- NCM --------------------------------------------------------------------------------
def test_ncm_means_are_the_class_means() -> None:
    z, y = stream(40, 3, 3)
    s = NCM()
    s.add_classes(3)
    s.learn_many(z[:13], y[:13])
    s.learn_many(z[13:], y[13:])
    for c in range(3):
        np.testing.assert_allclose(s.means[c], z[y == c].mean(axis=0), rtol=1e-6)


# -- CWR* -------------------------------------------------------------------------------
def test_cwr_star_consolidates_with_the_papers_formula() -> None:
    z, y = stream(24, 4, 3)
    y[y == 2] = 1  # two classes in the batch, class 2 stays untrained
    s = CWRStar(lr=0.1, epochs=2, batch_size=8)
    s.add_classes(3)
    cw = np.zeros((3, 4), np.float32)
    past = np.zeros(3)
    for call in range(2):
        s.learn_many(z, y)
        classes, cur = np.unique(y, return_counts=True)
        tw = np.vstack([cw[classes], np.zeros((1, 4), np.float32)])
        sgd_softmax(
            tw,
            None,
            z,
            y,
            lr=0.1,
            epochs=2,
            batch_size=8,
            weight_decay=0.0,
            rng=np.random.default_rng([0, call]),
        )
        tw = tw[:-1] - tw[:-1].mean()
        wpast = np.sqrt(past[classes] / cur)[:, None]
        cw[classes] = (cw[classes] * wpast + tw) / (wpast + 1)
        past[classes] += cur
        np.testing.assert_allclose(s.cw, cw, rtol=1e-5, atol=1e-7)
    assert s.past.tolist() == [2 * int((y == 0).sum()), 2 * int((y == 1).sum()), 0]
    assert np.all(s.cw[2] == 0)


def test_cwr_star_learns_from_single_sample_batches() -> None:
    z, y = stream(200, 8, 4)
    s = CWRStar()
    s.add_classes(4)
    for i in range(150):
        s.learn_many(z[i : i + 1], y[i : i + 1])
    accuracy = float(np.mean(s.predict_proba_many(z[150:]).argmax(axis=1) == y[150:]))
    assert accuracy >= 0.8, f"learn_one stream accuracy {accuracy:.2f}"


# -- replay size ------------------------------------------------------------------------
def test_only_the_replay_strategies_ask_for_replay() -> None:
    sizes = {name: strategies.create(name).replay_size for name in strategies.names()}
    replaying = {name for name, size in sizes.items() if size > 0}
    assert replaying == {"latent_replay", "exstream", "ar1"}
    assert strategies.create("latent_replay", replay_size=7).replay_size == 7


def test_the_learner_mixes_replayed_latents_into_latent_replay_batches() -> None:
    seen: list[int] = []

    class Spy(LatentReplay):
        def learn_many(self, z: FloatArray, y: IntArray) -> None:
            seen.append(len(y))
            super().learn_many(z, y)

    store = replay.create("class_balanced", max_bytes=100_000)
    learner = Learner(IdentityBackbone(4), Spy(replay_size=5), store)
    z, y = stream(12, 4, 2)
    learner.learn_many(z[:6], y[:6].tolist())
    learner.learn_many(z[6:8], y[6:8].tolist())
    assert seen == [6, 2 + 5]


# -- the learner, saved and loaded mid-stream -------------------------------------------
@pytest.mark.parametrize("name", strategies.names())
def test_learner_save_load_mid_stream_gives_identical_predictions(
    name: str, tmp_path: Path
) -> None:
    z, y = stream(120, 16, 5)
    order = np.argsort(y >= 3, kind="stable")  # classes 3 and 4 only in the second half
    z, y = z[order], y[order]
    labels = [f"class-{c}" for c in y.tolist()]
    store = replay.create("class_balanced", max_bytes=20_000, seed=1)
    learner = Learner(IdentityBackbone(16), strategies.create(name), store, seed=3)
    for start in range(0, 60, 6):
        learner.learn_many(z[start : start + 6], labels[start : start + 6])
    learner.save(tmp_path / "learner.snap")
    loaded = Learner.load(tmp_path / "learner.snap")
    np.testing.assert_array_equal(loaded.predict_proba_many(z), learner.predict_proba_many(z))
    for start in range(60, 120, 6):  # the rest of the stream, new classes included
        for lrn in (learner, loaded):
            lrn.learn_many(z[start : start + 6], labels[start : start + 6])
    np.testing.assert_array_equal(loaded.predict_proba_many(z), learner.predict_proba_many(z))
    assert loaded.predict_many(z) == learner.predict_many(z)
    assert loaded.prequential.accuracy == learner.prequential.accuracy
