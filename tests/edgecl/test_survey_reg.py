"""The survey's heads (issue 18): the optional MLP, the experience boundary, and each
strategy's defining mechanism on a tiny example."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from edgecl import Learner, checks, codec, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.strategies.cumulative import EVERYTHING, Cumulative
from edgecl.strategies.ensemble import Ensemble
from edgecl.strategies.ewc import EWC
from edgecl.strategies.linear import SGD, sgd_softmax
from edgecl.strategies.lwf import LwF
from edgecl.strategies.naive import Naive
from edgecl.strategies.net import Net, backward, forward, softmax_grad
from edgecl.strategies.progress_compress import ProgressCompress
from edgecl.strategies.si import SI
from edgecl.types import FloatArray, IntArray

SURVEY = ["cumulative", "ensemble", "lwf", "ewc", "si", "progress_compress"]


def blobs(classes: list[int], n: int, dim: int = 6, seed: int = 0) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(np.asarray(classes), size=n)
    z = np.eye(dim, dtype=np.float32)[y] * 3 + rng.normal(scale=0.5, size=(n, dim))
    return z.astype(np.float32), y.astype(np.int64)


# -- the MLP head -----------------------------------------------------------------------
def test_the_default_head_computes_exactly_what_the_linear_head_did() -> None:
    # The linear head as it was: SGD (sgd_softmax) on the trained rows of W and b.
    rng = np.random.default_rng(0)
    head = Naive(lr=0.05, batch_size=8, weight_decay=0.01)
    w, b, counts = np.zeros((0, 20), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
    for call in range(30):
        k = 2 + call // 10
        head.add_classes(k)
        w = np.vstack([w, np.zeros((k - len(w), 20), np.float32)])
        b, counts = (
            np.r_[b, np.zeros(k - len(b), np.float32)],
            np.r_[counts, [0] * (k - len(counts))],
        )
        y = rng.integers(0, k, size=13)
        z = (rng.normal(size=(13, 20)) + y[:, None]).astype(np.float32)
        head.learn_many(z, y)
        np.add.at(counts, y, 1)
        cols = np.flatnonzero(counts > 0)
        ww, bb = w[cols], b[cols]
        sgd = SGD(lr=0.05, batch_size=8, weight_decay=0.01)
        sgd_softmax(ww, bb, z, np.searchsorted(cols, y), sgd, sgd.rng(call))
        w[cols], b[cols] = ww, bb
    probe = rng.normal(size=(50, 20)).astype(np.float32)
    np.testing.assert_array_equal(head.logits_many(probe), probe @ w.T + b)
    state = head.state_dict()
    np.testing.assert_array_equal(state["w"], w)
    assert set(state) == {"w", "b", "counts", "calls"}  # the linear head's keys, as before


def test_backward_is_the_gradient_of_the_mean_cross_entropy() -> None:
    net = Net((5, 4), seed=3)
    net.grow(3, 6)
    rng = np.random.default_rng(1)
    for p in net.params.values():
        p += rng.normal(scale=0.3, size=p.shape).astype(np.float32)
    params = {k: v.astype(np.float64) for k, v in net.params.items()}
    x, y = rng.normal(size=(7, 6)), rng.integers(0, 3, size=7)

    def loss(ps: dict[str, Any]) -> float:
        logits = forward(ps, x)[0]
        logits = logits - logits.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(7), y]))

    logits, cache = forward(params, x)
    grads = backward(params, cache, softmax_grad(logits, y))
    for name, p in params.items():
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + 1e-6
            up = loss(params)
            p[i] = old - 1e-6
            down = loss(params)
            p[i] = old
            assert grads[name][i] == pytest.approx((up - down) / 2e-6, abs=1e-6), name


def test_hidden_layers_are_drawn_from_the_seed_alone() -> None:
    a, b, c = Net((8,), seed=1), Net((8,), seed=1), Net((8,), seed=2)
    for net in (a, b, c):
        net.grow(2, 4)
    np.testing.assert_array_equal(a.params["w0"], b.params["w0"])
    assert not np.array_equal(a.params["w0"], c.params["w0"])
    assert not a.params["w1"].any()  # output rows start at zero, as the linear head's


def test_hidden_layers_learn_what_a_linear_head_cannot() -> None:
    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [1, 1], [0, 1], [1, 0]], np.float32) * 4 - 2
    y = rng.integers(0, 4, size=400)
    z = corners[y] + rng.normal(scale=0.3, size=(400, 2)).astype(np.float32)
    labels = (y >= 2).astype(np.int64)  # XOR
    scores = {}
    for hidden in ([], [32]):
        s = Naive(lr=0.1, epochs=20, hidden=hidden)
        s.add_classes(2)
        s.learn_many(z[:300], labels[:300])
        scores[len(hidden)] = np.mean(s.predict_proba_many(z[300:]).argmax(axis=1) == labels[300:])
    assert scores[0] < 0.8 and scores[1] > 0.95, scores


@pytest.mark.parametrize("name", ["naive", "latent_replay", *SURVEY])
def test_the_mlp_heads_pass_the_conformance_checks(name: str) -> None:
    skip = {"check_options_round_trip", "check_bad_options_raise_a_value_error_naming_the_option"}
    make = functools.partial(strategies.REGISTRY.get(name), hidden=[16])
    for check in checks.strategy_checks():
        if check.__name__ not in skip:
            check(make)
    options = make().options()
    assert options["hidden"] == (16,)
    assert strategies.create(name, **codec.roundtrip(options)).options() == options


# -- the experience boundary --------------------------------------------------------------
def test_an_experience_ends_at_a_new_class_or_after_consolidate_every_samples() -> None:
    s = EWC(consolidate_every=25)
    s.add_classes(3)
    z, y = blobs([0, 1], 40)
    s.learn_many(z[:20], y[:20])
    assert s.experiences == 0  # the first batch never ends one
    s.learn_many(z[20:30], y[20:30])
    assert s.experiences == 0  # 20 < 25 samples
    s.learn_many(z[30:], y[30:])
    assert s.experiences == 1  # 30 >= 25 since the last boundary
    s.learn_many(*blobs([2], 3))
    assert s.experiences == 2  # a class never trained
    s.learn_many(*blobs([2, 0], 3, seed=1))
    assert s.experiences == 2


# -- ewc --------------------------------------------------------------------------------
def per_sample_fisher(head: EWC, z: FloatArray, y: IntArray) -> dict[str, Any]:
    """The empirical Fisher the slow way: the mean of squared per-sample gradients."""
    cols = np.flatnonzero(head.counts > 0)
    work = head.net.view(cols)
    total: dict[str, Any] = {}
    for i in range(len(y)):
        logits, cache = forward(work, z[i : i + 1])
        g = backward(work, cache, softmax_grad(logits, np.searchsorted(cols, y[i : i + 1])))
        for k, v in g.items():
            total[k] = total.get(k, 0) + v.astype(np.float64) ** 2
    return {k: v / len(y) for k, v in total.items()}


@pytest.mark.parametrize("hidden", [[], [5]])
def test_ewc_penalty_gradient_is_lambda_fisher_times_the_drift(hidden: list[int]) -> None:
    s = EWC(ewc_lambda=3.0, lr=0.1, hidden=hidden)
    s.add_classes(3)
    z, y = blobs([0, 1], 30)
    s.learn_many(z, y)  # one batch: the experience's Fisher is taken after it
    fisher = per_sample_fisher(s, z, y)
    star = {k: v.copy() for k, v in s.net.params.items()}
    s.learn_many(*blobs([2], 10, seed=1))  # a boundary, then the new class moves θ
    cols = np.flatnonzero(s.counts > 0)
    work = s.net.view(cols)
    grads = s.penalty_grads(work, cols)
    last = f"w{len(hidden)}"
    for k, f in fisher.items():
        drift = work[k] - (star[k] if k[1:] != last[1:] else star[k][cols])
        f_rows = np.zeros_like(work[k])
        f_rows[: len(f)] = f  # the new class's row has no Fisher yet
        np.testing.assert_allclose(grads[k], 3.0 * f_rows * drift, rtol=1e-4, atol=1e-7)
    assert any(np.abs(g).max() > 0 for g in grads.values())


def test_online_ewc_decays_the_old_fisher_by_gamma() -> None:
    made = {"first": EWC(), "online": EWC(mode="online", gamma=0.5), "separate": EWC()}
    for key, s in made.items():
        s.add_classes(4)
        for i, classes in enumerate(([0, 1], [2], [3])[: 2 if key == "first" else 3]):
            s.learn_many(*blobs(classes, 20, seed=i))
    f1 = made["first"].fisher  # after one boundary: the first experience's Fisher
    for k, f in made["separate"].fisher.items():
        f2 = f - np.pad(f1[k], [(0, len(f) - len(f1[k]))] + [(0, 0)] * (f.ndim - 1))
        expected = 0.5 * (f - f2) + f2  # separate keeps F1 + F2, online 0.5 F1 + F2
        np.testing.assert_allclose(made["online"].fisher[k], expected, rtol=1e-5, atol=1e-8)
    assert made["online"].fisher["b0"][0] < made["separate"].fisher["b0"][0]


# -- si ---------------------------------------------------------------------------------
def test_si_omega_is_the_path_integral_of_the_loss_decrease() -> None:
    # Full-batch gradient descent with small steps: Σ ω = Σ -g·Δθ ≈ L(θ_0) - L(θ_end).
    z, y = blobs([0, 1], 40)
    s = SI(lr=0.01, epochs=400, batch_size=40)
    s.add_classes(2)
    s.learn_many(z, y)

    def loss(params: dict[str, FloatArray]) -> float:
        logits = forward({k: v.astype(np.float64) for k, v in params.items()}, z)[0]
        logits -= logits.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(40), y]))

    start = {k: np.zeros_like(v) for k, v in s.net.params.items()}
    drop = loss(start) - loss(s.net.params)
    total = sum(float(v.sum()) for v in s.omega.values())
    assert total == pytest.approx(drop, rel=0.01)
    # At the boundary: Ω = ω / ((θ - θ_start)² + ξ).
    omega = {k: v.copy() for k, v in s.omega.items()}
    theta = {k: v.copy() for k, v in s.net.params.items()}
    s.add_classes(3)
    s.learn_many(*blobs([2], 5, seed=1))
    for k, v in omega.items():
        expected = v / ((theta[k][: len(v)] - start[k]) ** 2 + s.xi)
        np.testing.assert_allclose(s.importance[k][: len(v)], expected, rtol=1e-5)


# -- lwf --------------------------------------------------------------------------------
def test_lwf_distillation_keeps_old_logits_closer_than_naive() -> None:
    def near(centre: list[float], n: int, seed: int) -> FloatArray:
        noise = np.random.default_rng(seed).normal(scale=0.5, size=(n, 4))
        return (np.asarray(centre) + noise).astype(np.float32)

    z_old = np.vstack([near([3, 0, 0, 0], 30, 0), near([0, 3, 0, 0], 30, 1)])
    y_old = np.repeat([0, 1], 30)
    z_new, y_new = near([3, 1.5, 0, 0], 60, 2), np.full(60, 2)  # overlaps both old classes
    moved = {}
    for name, s in (("naive", Naive(lr=0.1)), ("lwf", LwF(lr=0.1)), ("off", LwF(0.0, lr=0.1))):
        s.add_classes(3)
        s.learn_many(z_old, y_old)
        before = np.diff(s.logits_many(z_old)[:, :2], axis=1)
        for start in range(0, 60, 10):
            s.learn_many(z_new[start : start + 10], y_new[start : start + 10])
        # The distillation is over the old classes' softmax: it holds their logits'
        # differences (what tells old classes apart), not their level.
        moved[name] = float(np.abs(np.diff(s.logits_many(z_old)[:, :2], axis=1) - before).mean())
    assert moved["lwf"] < 0.3 * moved["naive"], moved
    assert moved["off"] == moved["naive"]  # λ = 0 is naive exactly


# -- ensemble ---------------------------------------------------------------------------
def test_ensemble_adds_a_head_per_experience_and_answers_from_each() -> None:
    s = Ensemble(lr=0.2)
    s.add_classes(4)
    for i, classes in enumerate(([0, 1], [2], [3])):
        s.learn_many(*blobs(classes, 30, seed=i))
    assert len(s.heads) == 2 and s.owner.tolist() == [0, 0, 1, 2]
    z, _ = blobs([0], 1, seed=9)
    np.testing.assert_allclose(s.logits_many(z)[0, :2], s.heads[0].scores(z)[0, :2], rtol=1e-6)
    np.testing.assert_allclose(s.logits_many(z)[0, 2], s.heads[1].scores(z)[0, 2], rtol=1e-6)
    restored = Ensemble(lr=0.2)
    restored.load_state_dict(codec.roundtrip(s.state_dict()))
    assert len(restored.heads) == 2
    np.testing.assert_array_equal(restored.predict_proba_many(z), s.predict_proba_many(z))


# -- cumulative -------------------------------------------------------------------------
def test_cumulative_retrains_on_the_whole_store_at_a_boundary() -> None:
    store = replay.create("class_balanced", max_bytes=1 << 20, encoding="float32")
    strategy = Cumulative(replay_size=4, lr=0.1)
    learner = Learner(IdentityBackbone(6), strategy, store)
    z, y = blobs([0, 1], 60)
    for start in range(0, 60, 10):
        learner.learn_latents(z[start : start + 10], y[start : start + 10].tolist())
    counts_before = strategy.counts.copy()
    held = np.bincount(store.items()[1], minlength=2)
    assert held.sum() == 60 and strategy.replay_size == 4
    z2, y2 = blobs([2], 5, seed=1)
    learner.learn_latents(z2, y2.tolist())  # class 2 is new: the boundary
    assert strategy.experiences == 1 and strategy.replay_size == 4
    # Every stored item was replayed into the retrain, not replay_size of them.
    np.testing.assert_array_equal(strategy.counts[:2] - counts_before[:2], held)
    accuracy = np.mean(np.array(learner.predict_many(z)) == y)
    assert accuracy > 0.95
    assert Cumulative().options()["replay_size"] == 32 and EVERYTHING > 1 << 20


def test_cumulative_retrains_from_scratch_on_request() -> None:
    s = Cumulative(lr=0.1)
    s.add_classes(3)
    z, y = blobs([0, 1, 2], 60)
    s.learn_many(z, y)
    seen: list[float] = []

    def progress(fraction: float) -> bool:
        seen.append(fraction)
        return True

    state = s.retrain(z[y < 2], y[y < 2], progress)
    assert seen[-1] == 1.0 and len(seen) == s.retrain_epochs
    s.load_state_dict(state)
    assert s.counts[2] == 0  # the memory held no class 2: it is no longer answered
    assert np.all(s.predict_proba_many(z)[:, 2] == 0)


# -- progress & compress ----------------------------------------------------------------
def test_progress_compress_distils_the_active_column_into_the_knowledge_base() -> None:
    s = ProgressCompress(lr=0.3, compress_epochs=200, buffer_size=100)
    s.add_classes(3)
    z, y = blobs([0, 1], 60)
    for start in range(0, 60, 10):
        s.learn_many(z[start : start + 10], y[start : start + 10])
    active = s.snapshot().net
    s.learn_many(*blobs([2], 5, seed=1))  # boundary: compress, then progress on class 2
    assert s.kb_classes.tolist() == [0, 1]
    p_active = forward(active.params, z)[0][:, :2]
    p_kb = s.kb.scores(z)[:, :2]
    soft = [np.exp(p - p.max(axis=1, keepdims=True)) for p in (p_active, p_kb)]
    soft = [p / p.sum(axis=1, keepdims=True) for p in soft]
    assert np.abs(soft[0] - soft[1]).max() < 0.05
    # Old classes are answered by the knowledge base, the new one by the active column.
    logits = s.logits_many(z[:3])
    np.testing.assert_allclose(logits[:, :2], s.kb.scores(z[:3])[:, :2], rtol=1e-6)
    np.testing.assert_allclose(logits[:, 2], s.net.scores(z[:3])[:, 2], rtol=1e-6)
