"""The replay-selection, generative and hybrid strategies: each one's defining mechanism on
a tiny example, checked against a direct computation; and the learner's memory hook."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from edgecl import checks, codec, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.learner import Learner
from edgecl.protocols import MemoryReplay
from edgecl.replay.compress import dequantize_int8
from edgecl.strategies import agem, gem
from edgecl.strategies.agem import AGEM
from edgecl.strategies.gem import GEM
from edgecl.strategies.generative_negative_replay import GenerativeNegativeReplay
from edgecl.strategies.generative_replay import GenerativeReplay
from edgecl.strategies.generator import ClassGaussians
from edgecl.strategies.herding import herding, normalize
from edgecl.strategies.icarl import ICaRL
from edgecl.strategies.mir import MIR

DIM = 4
SIX = ["mir", "agem", "gem", "icarl", "generative_replay", "generative_negative_replay"]


def blobs(classes: list[int], n: int, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(classes, np.int64), n)
    z = np.eye(DIM, dtype=np.float32)[y] * 3 + rng.normal(scale=0.5, size=(len(y), DIM))
    return z.astype(np.float32), y


def ce_grad(w: Any, b: Any, x: Any, y: Any) -> Any:
    """The mean softmax cross-entropy's gradient, flattened as [W.ravel(), b]."""
    s = x.astype(np.float64) @ w.T + b
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    p /= len(y)
    return np.concatenate([(p.T @ x).ravel(), p.sum(axis=0)])


def ce_loss(w: Any, b: Any, x: Any, y: Any) -> Any:
    s = x.astype(np.float64) @ w.T + b
    m = s.max(axis=1, keepdims=True)
    return (m[:, 0] + np.log(np.exp(s - m).sum(axis=1))) - s[np.arange(len(y)), y]


def weights(strategy: Any) -> tuple[Any, Any]:
    state = strategy.state_dict()
    return np.asarray(state["w"], np.float64), np.asarray(state["b"], np.float64)


def one_step(make: Any, n_classes: int = 4) -> Any:
    """A head that learned classes 0 and 1 (one experience), then 2 (a second), and takes
    single full-batch steps from now on."""
    s = make(epochs=1, batch_size=1000, lr=0.5)
    s.add_classes(n_classes)
    s.learn_many(*blobs([0, 1], 10))
    s.learn_many(*blobs([2], 10, seed=1))
    return s


# -- A-GEM ------------------------------------------------------------------------------
def test_agem_step_does_not_raise_the_memory_loss_to_first_order() -> None:
    s = one_step(AGEM)
    zm, ym = blobs([0, 1, 2], 5, seed=2)
    z, y = blobs([3], 6, seed=3)
    w0, b0 = weights(s)
    s.learn_with_memory(z, y, zm, ym)  # 3 opens experience 3: 0, 1, 2 are past
    w1, b1 = weights(s)
    step = -np.concatenate([(w1 - w0).ravel(), b1 - b0]) / 0.5
    g = ce_grad(w0, b0, z, y)
    g_ref = ce_grad(w0, b0, zm, ym)
    assert g @ g_ref < -0.1  # the plain gradient would raise the memory's loss...
    assert step @ g_ref >= -1e-4 * np.linalg.norm(step) * np.linalg.norm(g_ref)  # ...this not
    np.testing.assert_allclose(step, agem.project(g, g_ref), atol=1e-5)


def mlp_params(strategy: Any) -> dict[str, Any]:
    """All parameters by name (``w0, b0, w1, b1``) of a head with one hidden layer."""
    state = strategy.state_dict()
    out = {k: np.asarray(v, np.float64) for k, v in state["layers"].items()}
    out["w1"], out["b1"] = np.asarray(state["w"], np.float64), np.asarray(state["b"], np.float64)
    return out


def mlp_loss(p: dict[str, Any], x: Any, y: Any) -> float:
    h = np.maximum(x.astype(np.float64) @ p["w0"].T + p["b0"], 0.0)
    return float(ce_loss(p["w1"], p["b1"], h, y).mean())


def numeric_grad(p: dict[str, Any], x: Any, y: Any) -> Any:
    """Central differences of the mean cross-entropy, flattened [w0, b0, w1, b1]."""
    out = []
    for name in ("w0", "b0", "w1", "b1"):
        flat = p[name].ravel()  # a view: perturbing it perturbs p
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + 1e-6
            up = mlp_loss(p, x, y)
            flat[i] = old - 1e-6
            down = mlp_loss(p, x, y)
            flat[i] = old
            out.append((up - down) / 2e-6)
    return np.array(out)


def test_agem_projection_holds_over_every_parameter_of_a_hidden_layer_head() -> None:
    s = one_step(functools.partial(AGEM, hidden=[8], seed=3))  # a seed whose step conflicts
    zm, ym = blobs([0, 1, 2], 5, seed=2)
    z, y = blobs([3], 6, seed=3)
    p0 = mlp_params(s)
    assert np.abs(p0["w0"]).sum() > 0 and np.abs(p0["w1"]).sum() > 0
    s.learn_with_memory(z, y, zm, ym)
    p1 = mlp_params(s)
    step = -np.concatenate([(p1[k] - p0[k]).ravel() for k in ("w0", "b0", "w1", "b1")]) / 0.5
    assert np.abs(step[: p0["w0"].size]).max() > 1e-4  # the hidden layer moved too
    g, g_ref = numeric_grad(p0, z, y), numeric_grad(p0, zm, ym)
    assert g @ g_ref < -0.01  # the plain gradient would raise the memory's loss...
    assert step @ g_ref >= -1e-4 * np.linalg.norm(step) * np.linalg.norm(g_ref)  # ...this not
    np.testing.assert_allclose(step, agem.project(g, g_ref), atol=1e-4)


def test_agem_projection_of_random_gradients() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        g, g_ref = rng.normal(size=(2, 7))
        out = agem.project(g, g_ref)
        assert out @ g_ref >= -1e-9
        if g @ g_ref >= 0:
            assert np.array_equal(out, g)


def test_agem_uses_only_past_experiences_as_reference() -> None:
    s = one_step(AGEM, n_classes=3)
    z, y = blobs([2], 6, seed=3)  # experience 2 goes on: its own items are no constraint
    w0, b0 = weights(s)
    s.learn_with_memory(z, y, *blobs([2], 5, seed=4))
    w1, b1 = weights(s)
    step = -np.concatenate([(w1 - w0).ravel(), b1 - b0]) / 0.5
    np.testing.assert_allclose(step, ce_grad(w0, b0, z, y), atol=1e-5)


# -- GEM --------------------------------------------------------------------------------
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_gem_step_keeps_every_past_experience_loss_from_rising(margin: float) -> None:
    s = GEM(epochs=1, batch_size=1000, lr=0.5, margin=margin)
    s.add_classes(4)
    for i, c in enumerate([[0], [1], [2]]):  # three experiences
        s.learn_many(*blobs(c, 10, seed=i))
    zm, ym = blobs([0, 1, 2], 4, seed=5)
    z, y = blobs([3], 6, seed=6)
    w0, b0 = weights(s)
    s.learn_with_memory(z, y, zm, ym)
    w1, b1 = weights(s)
    step = -np.concatenate([(w1 - w0).ravel(), b1 - b0]) / 0.5
    g = ce_grad(w0, b0, z, y)
    memories = [ce_grad(w0, b0, zm[ym == c], ym[ym == c]) for c in (0, 1, 2)]
    assert min(g @ m for m in memories) < -0.01  # a constraint was violated before
    for m in memories:
        assert step @ m >= -1e-4 * np.linalg.norm(step) * np.linalg.norm(m)


def test_gem_projection_is_the_closest_feasible_gradient_without_margin() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        g = rng.normal(size=6)
        memories = rng.normal(size=(3, 6))
        out = gem.project(g, memories)
        assert np.all(memories @ out >= -1e-8)
        # No feasible point nearby is closer: random feasible perturbations never win.
        for _ in range(20):
            other = out + rng.normal(scale=0.1, size=6)
            if np.all(memories @ other >= 0):
                assert np.linalg.norm(other - g) >= np.linalg.norm(out - g) - 1e-9
        one = gem.project(g, memories[:1])
        np.testing.assert_allclose(one, agem.project(g, memories[0]), atol=1e-8)


# -- MIR --------------------------------------------------------------------------------
def test_mir_selects_the_candidates_whose_loss_rises_most() -> None:
    s = MIR(replay_k=4, lr=0.5)
    s.add_classes(3)
    s.learn_many(*blobs([0, 1], 10))
    s.learn_many(*blobs([2], 3, seed=1))
    w, b = weights(s)
    xb, yb = blobs([2], 5, seed=2)
    xm, ym = blobs([0, 1, 2], 6, seed=3)
    # Brute force: each candidate's loss after the virtual step, one at a time.
    g = ce_grad(w, b, xb, yb)
    wv, bv = w - 0.5 * g[: w.size].reshape(w.shape), b - 0.5 * g[w.size :]
    rise = [
        ce_loss(wv, bv, xm[i : i + 1], ym[i : i + 1])[0]
        - ce_loss(w, b, xm[i : i + 1], ym[i : i + 1])[0]
        for i in range(len(ym))
    ]
    expected = sorted(range(len(ym)), key=lambda i: -rise[i])[:4]
    assert s.select({"w0": w, "b0": b}, xb, yb, xm, ym).tolist() == expected
    assert min(rise[i] for i in expected) >= max(np.delete(rise, expected))


# -- iCaRL ------------------------------------------------------------------------------
def test_icarl_herding_is_the_greedy_closest_running_mean() -> None:
    rng = np.random.default_rng(2)
    feats = normalize(rng.normal(size=(30, 5)))
    mean = feats.mean(axis=0)
    picked: list[int] = []
    for k in range(1, 9):  # brute force: try every remaining item at each step
        gaps = {
            i: np.linalg.norm(mean - feats[picked + [i]].sum(axis=0) / k)
            for i in range(30)
            if i not in picked
        }
        picked.append(min(gaps, key=lambda i: (gaps[i], i)))
    assert herding(feats, mean, 8).tolist() == picked


def test_icarl_keeps_its_exemplars_within_budget_and_predicts_the_nearest_mean() -> None:
    s = ICaRL(memory_items=12)
    s.add_classes(3)
    for seed, c in enumerate([0, 1, 2]):
        for start in range(0, 40, 8):
            s.learn_many(*(a[start : start + 8] for a in blobs([c], 40, seed=seed)))
    state = s.state_dict()["exemplars"]
    assert len(state["y"]) <= 12 and set(np.asarray(state["y"]).tolist()) == {0, 1, 2}
    codes, scales = np.asarray(state["codes"]), np.asarray(state["scales"])
    assert codes.dtype == np.int8 and s.nbytes() >= codes.nbytes + scales.nbytes
    held = dequantize_int8(codes, scales)
    z, _ = blobs([0, 1, 2], 5, seed=9)
    means = np.stack([normalize(held[np.asarray(state["y"]) == c]).mean(0) for c in range(3)])
    nearest = np.argmin(
        np.linalg.norm(normalize(z)[:, None] - normalize(means)[None], axis=2), axis=1
    )
    assert s.predict_proba_many(z).argmax(axis=1).tolist() == nearest.tolist()


def test_icarl_with_a_hidden_layer_compares_class_means_of_its_features() -> None:
    s = ICaRL(memory_items=12, hidden=[6], seed=3)
    s.add_classes(3)
    for seed, c in enumerate([0, 1, 2]):
        s.learn_many(*blobs([c], 16, seed=seed))
    state = s.state_dict()["exemplars"]
    held = dequantize_int8(np.asarray(state["codes"]), np.asarray(state["scales"]))
    labels = np.asarray(state["y"])
    w0, b0 = s.net.params["w0"].astype(np.float64), s.net.params["b0"]

    def feats(x: Any) -> Any:  # the trained hidden layer, not the latent
        return normalize(np.maximum(x.astype(np.float64) @ w0.T + b0, 0.0))

    means = normalize(np.stack([feats(held[labels == c]).mean(0) for c in range(3)]))
    z, _ = blobs([0, 1, 2], 5, seed=9)
    d = np.linalg.norm(feats(z)[:, None] - means[None], axis=2)
    expected = np.exp(-(d - d.min(axis=1, keepdims=True)) / s.temperature)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(s.predict_proba_many(z), expected, rtol=1e-5, atol=1e-6)


def test_icarl_distils_old_classes_from_the_head_at_the_experience_start() -> None:
    s = ICaRL(exemplar_replay=0, epochs=1, batch_size=1000, lr=0.5)
    s.add_classes(3)
    s.learn_many(*blobs([0, 1], 10))
    w0, b0 = weights(s)
    z, y = blobs([2], 6, seed=1)
    s.learn_many(z, y)  # a new experience: targets for 0 and 1 are the old head's outputs
    w1, b1 = weights(s)
    x = z.astype(np.float64)
    sig = 1 / (1 + np.exp(-(x @ w0.T + b0)))
    target = np.zeros_like(sig)
    target[:, :2] = sig[:, :2]
    target[:, 2] = 1.0
    grad = (sig - target) / len(y)
    np.testing.assert_allclose((w0 - w1) / 0.5, grad.T @ x, atol=1e-5)
    np.testing.assert_allclose((w0 - w1)[:2], 0.0, atol=1e-6)  # old outputs: fixed point


# -- generative replay -------------------------------------------------------------------
def test_generative_replay_holds_no_sample() -> None:
    assert strategies.paper_store("generative_replay").kind is None
    s = GenerativeReplay()
    s.add_classes(2)
    s.learn_many(*blobs([0, 1], 50))
    held = s.nbytes()
    for seed in range(1, 11):
        s.learn_many(*blobs([0, 1], 50, seed=seed))
    assert s.nbytes() == held  # 1000 samples learned, as many bytes as after 100
    generator = s.state_dict()["generator"]
    assert all(np.asarray(a).shape[0] == 2 for a in generator.values())  # one row per class


def test_generated_latents_match_the_class_mean_and_variance() -> None:
    rng = np.random.default_rng(3)
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    x = (mean + std * rng.normal(size=(3000, 3))).astype(np.float32)
    g = ClassGaussians()
    g.grow(2, 3)
    for start in range(0, 3000, 7):  # streaming, in odd batches
        g.fit(x[start : start + 7], np.ones(len(x[start : start + 7]), np.int64))
    np.testing.assert_allclose(g.means[1, 0], x.astype(np.float64).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(g.variances()[1, 0], x.astype(np.float64).var(axis=0), rtol=1e-5)
    out = g.sample(np.ones(20000, np.int64), np.random.default_rng(4))
    np.testing.assert_allclose(out.mean(axis=0), mean, atol=0.06)
    np.testing.assert_allclose(out.std(axis=0), std, rtol=0.05)


def test_negative_replay_trains_only_the_batch_classes_rows_on_generated_latents() -> None:
    options: dict[str, Any] = {"epochs": 1, "batch_size": 1000, "lr": 0.5}
    with_gen = GenerativeNegativeReplay(**options)
    without = GenerativeNegativeReplay(generated=0, **options)
    for s in (with_gen, without):
        s.add_classes(3)
        s.learn_many(*blobs([0, 1], 10))
        s.learn_many(*blobs([2], 6, seed=1))
    w1, _ = weights(with_gen)
    w0, _ = weights(without)
    np.testing.assert_allclose(w1[:2], w0[:2], atol=1e-6)  # old rows: real data only
    assert not np.allclose(w1[2], w0[2])  # the new class's row met the negatives


# -- the MLP head ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", SIX)
def test_the_gradient_heads_pass_the_conformance_checks_with_a_hidden_layer(name: str) -> None:
    skip = {"check_options_round_trip", "check_bad_options_raise_a_value_error_naming_the_option"}
    make = functools.partial(strategies.REGISTRY.get(name), hidden=[16])
    for check in checks.strategy_checks():
        if check.__name__ not in skip:
            check(make)
    options = make().options()
    assert options["hidden"] == (16,)
    assert strategies.create(name, **codec.roundtrip(options)).options() == options


@pytest.mark.parametrize("name", SIX)
def test_a_hidden_layer_is_kept_in_the_state_and_the_default_keeps_the_linear_keys(
    name: str,
) -> None:
    z, y = blobs([0, 1], 10)
    linear, mlp = strategies.create(name), strategies.create(name, hidden=[5])
    for s in (linear, mlp):
        s.add_classes(2)
        s.learn_many(z, y)
    assert "layers" not in linear.state_dict() and np.asarray(linear.state_dict()["w"]).shape == (
        2,
        DIM,
    )
    state = codec.roundtrip(mlp.state_dict())
    assert np.asarray(state["layers"]["w0"]).shape == (5, DIM)
    assert np.asarray(state["w"]).shape == (2, 5)
    restored = strategies.create(name, hidden=[5])
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.predict_proba_many(z), mlp.predict_proba_many(z))


def test_hidden_must_be_a_list_of_widths() -> None:
    for name in SIX:
        with pytest.raises(ValueError, match="hidden"):
            strategies.create(name, hidden=[0])


# -- the learner's hook ---------------------------------------------------------------------
class Recorded(AGEM):
    """A-GEM that notes what the learner hands it."""

    name = "recorded"

    def __init__(self, memory_size: int = 5, seed: int = 0) -> None:
        super().__init__(memory_size=memory_size, seed=seed)
        self.calls_seen: list[tuple[Any, Any, Any, Any]] = []

    def learn_with_memory(self, z: Any, y: Any, zm: Any, ym: Any) -> None:
        self.calls_seen.append((z.copy(), y.copy(), zm.copy(), ym.copy()))
        super().learn_with_memory(z, y, zm, ym)


def test_the_learner_passes_the_memory_draw_beside_the_batch() -> None:
    strategy = Recorded()
    assert isinstance(strategy, MemoryReplay)
    store = replay.create("reservoir", max_bytes=10_000, encoding="float32")
    learner = Learner(IdentityBackbone(DIM), strategy, store)
    z, y = blobs([0, 1], 4)
    learner.learn_latents(z, [str(c) for c in y])
    first = strategy.calls_seen[0]
    assert np.array_equal(first[0], z) and len(first[2]) == 0  # an empty store: no memory
    z2, y2 = blobs([2], 3, seed=1)
    learner.learn_latents(z2, ["2"] * 3)
    zb, yb, zm, ym = strategy.calls_seen[1]
    assert np.array_equal(zb, z2) and yb.tolist() == [2, 2, 2]  # the batch alone
    assert len(zm) == 5 and set(ym.tolist()) <= {0, 1}  # the draw, apart
    stored_z, _ = store.items()
    assert all(any(np.array_equal(row, s) for s in stored_z) for row in zm)


def test_a_restored_learner_draws_the_same_memory_and_ends_in_the_same_state() -> None:
    store = replay.create("reservoir", max_bytes=2_000, encoding="float32")
    learner = Learner(IdentityBackbone(DIM), MIR(memory_size=6, replay_k=2), store, seed=3)
    learner.learn_latents(*_labelled(blobs([0, 1], 10)))
    restored = Learner.from_state(codec.roundtrip(learner.state_dict()))
    for seed, c in enumerate([[2], [0, 3]]):
        for each in (learner, restored):
            each.learn_latents(*_labelled(blobs(c, 8, seed=seed + 1)))
    assert codec.packb(restored.state_dict()) == codec.packb(learner.state_dict())


def _labelled(batch: tuple[Any, Any]) -> tuple[Any, list[str]]:
    return batch[0], [str(c) for c in batch[1]]
