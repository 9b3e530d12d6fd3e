"""Streaming LDA: the paper's statistics, and predictions within the stated tolerance of the
exact precision while the precision is kept by rank-one updates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgecl import Learner, codec
from edgecl.backbones import IdentityBackbone
from edgecl.strategies import lda_next, slda_forms
from edgecl.strategies import slda as slda_module
from edgecl.strategies.cholesky import precision, solve_weights
from edgecl.strategies.slda import StreamingLDA
from edgecl.types import FloatArray, IntArray
from tests.edgecl.test_strategies import stream


def relu_stream(n: int, dim: int, n_classes: int, seed: int) -> tuple[FloatArray, IntArray]:
    """Pooled-CNN-like latents: rank-deficient for n < dim, with near-null directions."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, size=n)
    z = np.maximum(protos[y] + rng.normal(size=(n, dim)), 0).astype(np.float32)
    return z, y.astype(np.int64)


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


def exact_scores(s: StreamingLDA, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact scores, and the bound the tolerance gives on their error:
    ``tol (‖μ‖_Λ ‖x‖_Λ + ½ ‖μ‖²_Λ)`` (each eigenvalue of the precision used is within a
    relative ``tol`` of the exact one)."""
    eps, dim = s.shrinkage, s.dim
    lam = np.linalg.inv((1 - eps) * s.sigma + eps * np.eye(dim))
    x = x.astype(np.float64)
    scores = x @ lam @ s.means.T - 0.5 * np.sum(s.means @ lam * s.means, axis=1)
    norm_mu = np.sqrt(np.sum(s.means @ lam * s.means, axis=1))
    norm_x = np.sqrt(np.sum(x @ lam * x, axis=1))
    bound = s.tolerance * (norm_x[:, None] * norm_mu[None, :] + 0.5 * norm_mu**2)
    return scores, bound


def used_scores(s: StreamingLDA, x: np.ndarray) -> np.ndarray:
    """The scores the head predicts from, of the trained classes."""
    return s.scores_many(x)[:, s.counts > 0]


def test_slda_batches_equal_the_papers_sample_by_sample_update() -> None:
    z, y = stream(60, 5, 3)
    s = StreamingLDA()
    s.add_classes(3)
    for start, stop in ((0, 1), (1, 17), (17, 40), (40, 60)):  # a first sample mid-batch
        s.learn_many(z[start:stop], y[start:stop])
        s.predict_proba_many(z[:2])  # a kept precision, updated by the later batches
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


@pytest.mark.parametrize(
    ("tolerance", "dim", "step"), [(1e-3, 48, 1), (1e-6, 48, 1), (1e-3, 192, 1), (1e-3, 192, 7)]
)
def test_slda_stays_within_tolerance_of_the_exact_solution_on_a_long_stream(
    tolerance: float, dim: int, step: int
) -> None:
    """Test-then-train as the daemon does (one sample, or small batches), on a stream long
    enough to pass from a rank-deficient covariance to a full one (at 192-d through each
    form of the kept precision: exact for few terms, in the terms' space, explicit);
    every 25th step is compared with the exact precision, each score and novelty within
    the stated bound."""
    n = 1500
    z, y = relu_stream(n, dim, 6, seed=3)
    learner = Learner(IdentityBackbone(dim), StreamingLDA(tolerance=tolerance))
    s = learner.strategy
    assert isinstance(s, StreamingLDA)
    probe, forms = z[:40], set()
    for i in range(0, n, step):
        learner.learn_many(z[i : i + step], [int(v) for v in y[i : i + step]])
        forms.add("few" if s._few is not None else "rows" if s._rows is not None else "kept")
        if (i // step) % 25 == 24 and len(set(y[: i + 1].tolist())) > 1:
            got = used_scores(s, probe)
            want, bound = exact_scores(s, probe)
            trained = s.counts > 0
            want, bound = want[:, trained], bound[:, trained]
            limit = bound + 1e-9 * np.abs(want).max()
            err = got - want
            assert np.all(np.abs(err) <= limit), (i, float((np.abs(err) / limit).max()))
            # novelty: zᵀΛz − 2 max score, each term within its bound
            lam = np.linalg.inv((1 - s.shrinkage) * s.sigma + s.shrinkage * np.eye(dim))
            x = probe.astype(np.float64)
            quad = np.einsum("ij,jk,ik->i", x, lam, x)
            exact_novelty = quad - 2 * want.max(axis=1)
            room = tolerance * quad + 2 * limit.max(axis=1) + 1e-9 * np.abs(quad).max()
            assert np.all(np.abs(s.novelty_many(probe) - exact_novelty) <= room), i
    assert forms == ({"few", "kept"} if dim == 48 else {"few", "rows", "kept"})


def test_slda_a_snapshot_in_the_terms_space_form_is_frozen() -> None:
    """While the precision is kept in the space of the scatter's terms, a snapshot shares
    its buffers, which later learning writes past; it must predict as it did."""
    dim = 160
    z, y = relu_stream(200, dim, 4, seed=5)
    learner = Learner(IdentityBackbone(dim), StreamingLDA())
    s = learner.strategy
    assert isinstance(s, StreamingLDA)
    for i in range(110):
        learner.learn_one(z[i], int(y[i]))
    assert s._rows is not None
    frozen = s.snapshot()
    before = frozen.scores_many(z[:30])
    for i in range(110, 118):
        learner.learn_one(z[i], int(y[i]))
    learner.learn_many(z[118:120], [int(v) for v in y[118:120]])
    np.testing.assert_array_equal(frozen.scores_many(z[:30]), before)
    assert not np.array_equal(s.scores_many(z[:30]), before)


def test_slda_a_snapshot_of_the_explicit_form_is_frozen() -> None:
    """The explicit precision keeps its unfolded terms in a buffer that later learning
    writes past, and folds them into a new matrix: a snapshot must predict as it did
    through single samples, small batches and a fold."""
    dim = 48
    z, y = relu_stream(600, dim, 4, seed=8)
    # A loose tolerance: no factorisation replaces the kept precision in between.
    learner = Learner(IdentityBackbone(dim), StreamingLDA(tolerance=0.2))
    s = learner.strategy
    assert isinstance(s, StreamingLDA)
    for i in range(300):
        learner.learn_one(z[i], int(y[i]))
    kept = s._kept
    assert kept is not None
    frozen = s.snapshot()
    before, novelty = frozen.scores_many(z[:30]), frozen.novelty_many(z[:30])
    for i in range(300, 500):  # past a fold of the unfolded terms
        learner.learn_one(z[i], int(y[i]))
    learner.learn_many(z[500:510], [int(v) for v in y[500:510]])
    assert s._kept is kept
    frozen.scores_many(z[100:101])  # its last product is of another input: none reused
    np.testing.assert_array_equal(frozen.scores_many(z[:30]), before)
    np.testing.assert_array_equal(frozen.novelty_many(z[:30]), novelty)
    assert not np.array_equal(s.scores_many(z[:30]), before)


def test_slda_learning_a_sample_needs_no_factorisation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(a: np.ndarray) -> np.ndarray:
        calls.append(len(a))
        return precision(a)

    monkeypatch.setattr(slda_module, "precision", counted)
    dim = 32
    z, y = relu_stream(3000, dim, 5, seed=4)
    learner = Learner(IdentityBackbone(dim), StreamingLDA())
    for i in range(2000):  # warm-up
        learner.learn_one(z[i], int(y[i]))
    calls.clear()
    for i in range(2000, 3000):
        learner.learn_one(z[i], int(y[i]))
    # ln(3000/2000) of growth with first-order steps of at most sqrt(1e-3) each.
    assert len(calls) <= 15, len(calls)


@pytest.mark.parametrize("background", [True, False])
def test_slda_folds_at_most_sigma_rows_waiting_terms_at_once(
    monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    """Test-then-train one sample at a time: the terms waiting for ``Σ`` are folded in
    groups of at most :data:`SIGMA_ROWS` (their memory and the step that folds them stay
    bounded however long the stream), by the head or its thread, into the paper's ``Σ``."""
    sizes: list[int] = []
    fold = lda_next.folded

    def counted(sigma: Any, sigma_at: int, pending: Any, t: int) -> Any:
        sizes.append(sum(len(p) for p in pending))
        return fold(sigma, sigma_at, pending, t)

    monkeypatch.setattr(slda_forms, "folded", counted)
    monkeypatch.setattr(lda_next, "folded", counted)
    z, y = relu_stream(3 * slda_forms.SIGMA_ROWS + 100, 24, 4, seed=9)
    s = StreamingLDA(tolerance=1e-6, background=background)
    s.add_classes(4)
    for i in range(len(z)):
        s.predict_proba_many(z[i : i + 1])
        s.learn_many(z[i : i + 1], y[i : i + 1])
    _, sigma = paper_slda(z, y, 4)
    np.testing.assert_allclose(s.sigma, sigma, rtol=1e-9, atol=1e-12)
    assert len(sizes) >= 3 and max(sizes) <= slda_forms.SIGMA_ROWS, sizes


def test_slda_a_large_batch_and_single_samples_agree() -> None:
    z, y = relu_stream(700, 24, 4, seed=6)
    one, big = StreamingLDA(tolerance=1e-9), StreamingLDA(tolerance=1e-9)
    for s in (one, big):
        s.add_classes(4)
        s.learn_many(z[:100], y[:100])
        s.predict_proba_many(z[:1])
    for i in range(100, 700):
        one.learn_many(z[i : i + 1], y[i : i + 1])
    big.learn_many(z[100:], y[100:])  # past the batch size that factorises again
    np.testing.assert_allclose(one.sigma, big.sigma, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(one.predict_proba_many(z), big.predict_proba_many(z), atol=1e-6)


def test_slda_weights_equal_the_explicit_inverse_on_random_data() -> None:
    """Few samples in many dimensions (a rank-deficient covariance, so the default
    shrinkage 1e-4 sets the smallest eigenvalues) and more samples than dimensions."""
    rng = np.random.default_rng(5)
    dim = 300
    for n in (120, 900):
        y = rng.integers(0, 6, size=n)
        protos = rng.normal(size=(6, dim))
        z = np.maximum(protos[y] + rng.normal(size=(n, dim)), 0).astype(np.float32)
        s = StreamingLDA()
        s.add_classes(6)
        for start in range(0, n, 50):
            s.learn_many(z[start : start + 50], y[start : start + 50])
            s.predict_proba_many(z[:5])
        want, bound = exact_scores(s, z)
        err = used_scores(s, z) - want
        assert np.all(np.abs(err) <= bound + 1e-9 * np.abs(want).max())


def test_slda_falls_back_to_a_general_solve_when_cholesky_fails() -> None:
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])  # rounding can do this to a huge sigma
    mu = np.array([[1.0], [0.5]])
    w, b = solve_weights(indefinite, mu)
    np.testing.assert_allclose(w, np.linalg.solve(indefinite, mu))
    np.testing.assert_allclose(b, -0.5 * mu[:, 0] @ w[:, 0])
    np.testing.assert_allclose(precision(indefinite), np.linalg.inv(indefinite))


def test_slda_covariance_freezes_after_covariance_samples() -> None:
    z, y = stream(30, 4, 2)
    plastic, frozen = StreamingLDA(), StreamingLDA(covariance_samples=10)
    for s in (plastic, frozen):
        s.add_classes(2)
        s.learn_many(z[:10], y[:10])
    np.testing.assert_array_equal(plastic.sigma, frozen.sigma)
    sigma_10 = frozen.sigma.copy()
    for s in (plastic, frozen):
        s.predict_proba_many(z[:1])
        s.learn_many(z[10:], y[10:])
    np.testing.assert_array_equal(frozen.sigma, sigma_10)
    assert not np.allclose(plastic.sigma, sigma_10)
    np.testing.assert_array_equal(frozen.means, plastic.means)  # means stay plastic
    want, bound = exact_scores(frozen, z)  # the frozen Σ: no drift to correct
    np.testing.assert_array_less(np.abs(used_scores(frozen, z) - want), bound + 1e-9)


def test_slda_state_is_half_the_covariance_and_restores_exactly() -> None:
    z, y = stream(200, 16, 3)
    s = StreamingLDA()
    s.add_classes(3)
    s.learn_many(z[:150], y[:150])
    for i in range(150, 200):
        s.predict_proba_many(z[i : i + 1])
        s.learn_many(z[i : i + 1], y[i : i + 1])
    state = codec.roundtrip(s.state_dict())
    assert state["sigma_upper"].shape == (16 * 17 // 2,)
    restored = StreamingLDA(**s.options())
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.sigma, s.sigma)
    np.testing.assert_array_equal(restored.predict_proba_many(z), s.predict_proba_many(z))
    for head in (s, restored):  # and they go on alike
        head.learn_many(z[:7], y[:7])
    np.testing.assert_array_equal(restored.predict_proba_many(z), s.predict_proba_many(z))


def test_slda_loads_a_checkpoint_of_the_earlier_format() -> None:
    z, y = stream(40, 4, 2)
    s = StreamingLDA()
    s.add_classes(2)
    s.learn_many(z, y)
    old: dict[str, Any] = {
        "means": s.means.copy(),
        "counts": s.counts.copy(),
        "sigma": s.sigma.copy(),
        "n_updates": s.n_updates,
        "precision": None,
        "precision_at": 0,
    }
    restored = StreamingLDA(shrinkage=1e-4, covariance_samples=None, precision_refresh=1)
    restored.load_state_dict(codec.roundtrip(old))
    np.testing.assert_array_equal(restored.sigma, s.sigma)
    np.testing.assert_allclose(restored.predict_proba_many(z), s.predict_proba_many(z))


def test_slda_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="shrinkage"):
        StreamingLDA(shrinkage=1.5)
    with pytest.raises(ValueError, match="shrinkage"):
        StreamingLDA(shrinkage=0)
    with pytest.raises(ValueError, match="tolerance"):
        StreamingLDA(tolerance=0)
