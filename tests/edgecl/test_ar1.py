"""AR1*: CWR* on the output layer, SI on the layers above the cut, latent replay at the cut."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecl import Learner, codec, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.bench.streams import PrecomputedBackbone
from edgecl.protocols import Rows
from edgecl.strategies.ar1 import AR1
from edgecl.strategies.cwr_star import CWRStar
from edgecl.types import FloatArray, IntArray

torch = pytest.importorskip("torch")


def blobs(classes: list[int], n: int, dim: int = 6, seed: int = 0) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(42).normal(scale=2.0, size=(10, dim))
    y = np.repeat(np.asarray(classes, dtype=np.int64), n)
    z = (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32)
    order = rng.permutation(len(y))
    return z[order], y[order]


def params(s: AR1) -> dict[str, FloatArray]:
    return params_of(s.net.module)


def params_of(module: Any) -> dict[str, FloatArray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("outputs", [0, 10])
def test_without_layers_above_the_cut_ar1_is_cwr_star(outputs: int) -> None:
    ar1 = AR1(
        momentum=0.0,
        lr=0.05,
        inc_lr=0.05,
        epochs=2,
        batch_size=8,
        weight_decay=0.0,
        outputs=outputs,
    )
    cwr = CWRStar(lr=0.05, epochs=2, batch_size=8, weight_decay=0.0, outputs=outputs)
    for s in (ar1, cwr):
        s.add_classes(4)
    for step, classes in enumerate(([0, 1], [2, 3], [0, 2], [1])):
        z, y = blobs(classes, 12, seed=step)
        ar1.learn_many(z, y)
        cwr.learn_many(z, y)
    z, _ = blobs([0, 1, 2, 3], 10, seed=9)
    np.testing.assert_allclose(ar1.cw, cwr.cw, atol=1e-5)
    np.testing.assert_array_equal(ar1.past, cwr.past)
    np.testing.assert_allclose(ar1.predict_proba_many(z), cwr.predict_proba_many(z), atol=1e-5)


@pytest.mark.parametrize("outputs", [3, 6])
def test_ar1_trains_as_the_reference_layer_of_every_output(outputs: int) -> None:
    """The reference's training, by hand in torch: an output layer of ``max(outputs,
    classes known)`` rows, the batch's classes from their consolidated weights and every
    other row zero, one SGD with momentum and weight decay over it and the layer above the
    cut, then CWR*'s consolidation. AR1's single background row gives the same weights,
    single-class batches and a batch of every class (no background) included."""
    import copy

    import torch.nn.functional as F  # noqa: N812

    from edgecl.strategies.cwr_star import consolidate

    lr, inc_lr, top_lr, epochs, size, mu, decay = 0.05, 0.02, 0.01, 2, 4, 0.9, 0.0005
    s = AR1(
        hidden=5,
        lr=lr,
        inc_lr=inc_lr,
        top_lr=top_lr,
        momentum=mu,
        weight_decay=decay,
        epochs=epochs,
        batch_size=size,
        outputs=outputs,
    )
    s.add_classes(4)
    s.net.ensure_built(6)
    module: Any = copy.deepcopy(s.net.module)
    rows = max(outputs, 4)
    cw, past = np.zeros((rows, 5), np.float32), np.zeros(rows, np.int64)
    for call, classes in enumerate(([2], [0, 1], [0, 1, 2, 3], [3], [1, 2])):
        z, y = blobs(classes, 5, seed=call)
        s.learn_many(z, y)
        present, cur = np.unique(y, return_counts=True)
        layer = torch.zeros(rows, 5)
        layer[present] = torch.from_numpy(cw[present])
        layer.requires_grad_(True)
        trainable = [*module.parameters(), layer]
        rates = [top_lr] * (len(trainable) - 1) + [lr if call == 0 else inc_lr]
        velocity = [torch.zeros_like(p) for p in trainable]
        rng = np.random.default_rng([0, call])
        for _ in range(epochs):
            order = rng.permutation(len(y))
            for start in range(0, len(y), size):
                idx = order[start : start + size]
                logits = module(torch.from_numpy(z[idx])) @ layer.T
                loss = F.cross_entropy(logits, torch.from_numpy(y[idx]))
                grads = torch.autograd.grad(loss, trainable)
                with torch.no_grad():
                    for p, v, g, rate in zip(trainable, velocity, grads, rates, strict=True):
                        v.mul_(mu).add_(g + decay * p)
                        p.sub_(rate * v)
        consolidate(cw, past, present, cur, layer.detach().numpy()[present])
        np.testing.assert_allclose(s.cw, cw[:4], rtol=1e-4, atol=1e-6, err_msg=f"batch {call}")
        for name, value in params_of(module).items():
            np.testing.assert_allclose(params(s)[name], value, rtol=1e-4, atol=1e-6)
    assert s.past.tolist() == past[:4].tolist()


def test_ar1_learns_from_a_first_single_class_batch() -> None:
    # Over its own output alone the softmax is constant: the layer's other outputs give
    # the gradient (one zero row counted once gave a weak one).
    s = AR1(hidden=4, lr=0.05)
    s.add_classes(1)
    s.learn_many(*blobs([0], 8))
    assert np.abs(s.cw).sum() > 0


def test_importance_is_the_path_integral_over_the_squared_change() -> None:
    # One plain SGD step (momentum 0, one minibatch, λ 0): Δ = -lr g, so the path
    # t = g Δ = -Δ² / lr and Ω = min(-t / (Δ² + ξ), clip), the reference's formula.
    lr, xi, clip = 0.05, 1e-4, 10.0
    s = AR1(hidden=5, lr=0.5, inc_lr=lr, si_xi=xi, si_clip=clip, momentum=0.0, weight_decay=0.0)
    s.add_classes(2)
    s.learn_many(*blobs([0, 1], 10, dim=3, seed=5))  # a first batch: output weights to pass g
    s.net.si.total = {k: np.zeros_like(v) for k, v in s.net.si.total.items()}
    before = params(s)
    s.sgd = dataclasses.replace(s.sgd, epochs=1, batch_size=64)
    s.learn_many(*blobs([0, 1], 10, dim=3))
    after = params(s)
    for name in ("0.weight", "0.bias"):
        delta = after[name] - before[name]
        expected = np.minimum((delta**2 / lr) / (delta**2 + xi), clip)
        np.testing.assert_allclose(s.net.si.omega(name), expected, rtol=1e-3, atol=1e-7)
        np.testing.assert_array_equal(s.net.si.star[name], after[name])
    weights = s.net.si.omega("0.weight")
    assert np.any(weights == clip) and np.any((weights > 0) & (weights < clip))


def test_a_state_taken_is_not_changed_by_later_batches() -> None:
    """The importance and anchors are updated in place after each batch: a state taken
    before (a copy) keeps its values, and a head loaded from it predicts as it did."""
    s = AR1(hidden=5, si_lambda=0.5, epochs=2, batch_size=8)
    s.add_classes(3)
    s.learn_many(*blobs([0, 1], 10, dim=4, seed=1))
    state = s.state_dict()
    kept = codec.packb(state)
    test, _ = blobs([0, 1, 2], 5, dim=4, seed=9)
    expected = s.predict_proba_many(test)
    s.learn_many(*blobs([1, 2], 10, dim=4, seed=2))
    assert codec.packb(state) == kept
    assert not np.array_equal(
        s.state_dict()["net"]["omega"]["0.weight"], state["net"]["omega"]["0.weight"]
    )
    again = AR1(hidden=5, si_lambda=0.5, epochs=2, batch_size=8)
    again.load_state_dict(codec.unpackb(kept))
    np.testing.assert_array_equal(again.predict_proba_many(test), expected)


def test_synaptic_intelligence_on_a_quadratic_follows_the_reference_formula() -> None:
    """SGD with momentum on L(θ) = a (θ - c)² / 2 over three batches, through the SI
    penalty, against the reference's ``post_update`` / ``update_ewc_data`` by hand."""
    from edgecl.strategies.ar1_top import SynapticIntelligence

    a, c, lr, mu, lam, xi, clip = 2.0, [1.0, -3.0], 0.1, 0.9, 1.0, 1e-3, 3.0
    si = SynapticIntelligence(lam, xi, clip)
    theta = torch.tensor([0.5, 0.0])
    si.track("w", theta.numpy())
    # By hand, in plain floats, one coordinate at a time.
    hand_theta, hand_total = [0.5, 0.0], [0.0, 0.0]
    star = list(hand_theta)
    for steps in (3, 2, 2):  # three batches; the clip holds the second coordinate's Ω in the last
        si.begin([("w", theta)])
        velocity = torch.zeros(2)
        omega = [min(t, clip) for t in hand_total]
        start, path, v = list(hand_theta), [0.0, 0.0], [0.0, 0.0]
        for _ in range(steps):
            g = si.gradient(0, theta, a * (theta - torch.tensor(c)))
            velocity = mu * velocity + g
            step = -lr * velocity
            theta = theta + step
            si.moved(0, g, step)
            for i in range(2):
                gi = a * (hand_theta[i] - c[i]) + lam * omega[i] * (hand_theta[i] - star[i])
                v[i] = mu * v[i] + gi
                new = hand_theta[i] - lr * v[i]
                path[i] += gi * (new - hand_theta[i])
                hand_theta[i] = new
        si.end([("w", theta)])
        for i in range(2):
            hand_total[i] -= path[i] / ((hand_theta[i] - start[i]) ** 2 + xi)
        star = list(hand_theta)
        np.testing.assert_allclose(si.total["w"], hand_total, rtol=1e-5)
        np.testing.assert_allclose(si.star["w"], hand_theta, rtol=1e-5)
    # The second coordinate moved far: its importance hit the clip; the first did not.
    assert si.omega("w")[1] == np.float32(clip) and 0 < si.omega("w")[0] < clip


def test_each_batch_steps_at_the_reference_schedules_learning_rate() -> None:
    """Plain SGD, one minibatch per batch: every batch moves the layer above the cut by
    -rate x its gradient, the rate ``lr`` on the first batch and ``inc_lr`` after, unless
    ``top_lr`` fixes it."""
    import torch.nn.functional as F  # noqa: N812

    for top_lr, rates in ((None, [0.01, 0.002, 0.002]), (0.004, [0.004] * 3)):
        s = AR1(
            hidden=4,
            lr=0.01,
            inc_lr=0.002,
            top_lr=top_lr,
            momentum=0.0,
            weight_decay=0.0,
            outputs=0,  # one zero row counted once, as the hand-built layer below
        )
        s.sgd = dataclasses.replace(s.sgd, epochs=1)
        s.add_classes(3)
        for step, rate in enumerate(rates):
            z, y = blobs([step, (step + 1) % 3], 6, dim=3, seed=step)
            module: Any = s.net.module
            if module is not None:
                classes = np.unique(y)
                tw = np.vstack([s.cw[classes], np.zeros((1, s.cw.shape[1]), np.float32)])
                wrt = list(module.parameters())
                logits = module(torch.from_numpy(z)) @ torch.from_numpy(tw).T
                loss = F.cross_entropy(logits, torch.from_numpy(np.searchsorted(classes, y)))
                grads = torch.autograd.grad(loss, wrt)
                before = [p.detach().clone() for p in wrt]
            s.learn_many(z, y)
            module = s.net.module
            if step == 0:
                # The first batch also builds the layer: its step is checked from the second.
                continue
            for p, b, g in zip(module.parameters(), before, grads, strict=True):
                np.testing.assert_allclose((p.detach() - b).numpy(), -rate * g.numpy(), atol=1e-7)


def test_synaptic_intelligence_holds_important_weights_in_place() -> None:
    # Movement on later batches, weighted by the importance learned on the first: SI lets
    # unimportant weights move freely and holds the important ones.
    moved = {}
    for lam in (0.0, 1e4):
        s = AR1(hidden=16, si_lambda=lam, lr=0.05, inc_lr=0.05, seed=1)
        s.add_classes(4)
        s.learn_many(*blobs([0, 1], 40, dim=6))
        anchor = params(s)
        importance = {k: np.maximum(s.net.si.omega(k), 0.0) for k in s.net.si.total}
        for step in range(3):
            s.learn_many(*blobs([2, 3], 40, dim=6, seed=step + 1))
        after = params(s)
        moved[lam] = sum(
            float(np.sum(w * (after[k] - anchor[k]) ** 2)) for k, w in importance.items()
        )
    assert moved[1e4] < 0.5 * moved[0.0]


def test_the_learner_mixes_replayed_latents_into_every_ar1_batch() -> None:
    seen: list[int] = []

    class Spy(AR1):
        def learn_rows(self, rows: Rows, y: IntArray) -> None:
            seen.append(len(rows))
            super().learn_rows(rows, y)

    store = replay.create("latent_replay", max_bytes=100_000)
    learner = Learner(IdentityBackbone(6), Spy(replay_size=20, epochs=1), store)
    for step in range(3):
        z, y = blobs([step], 15, seed=step)
        learner.learn_many(z, y.tolist())
    assert seen == [15, 15 + 15, 15 + 20]
    assert set(store.items()[1].tolist()) == {0, 1, 2}


@pytest.mark.parametrize("encoding", ["int8", "float16"])
def test_replay_read_a_minibatch_at_a_time_trains_as_the_decoded_batch(encoding: str) -> None:
    # The learner hands AR1 its replay still encoded; a twin fed what the learner used to
    # give (the same draw, decoded whole and appended to the batch) must end bit-equal.
    options: dict[str, Any] = {"hidden": 8, "replay_size": 20, "epochs": 2, "batch_size": 8}
    options["lr"] = 0.1
    store = replay.create("latent_replay", max_bytes=40 * (6 * 4 + 12), encoding=encoding)
    learner = Learner(IdentityBackbone(6), AR1(**options), store, seed=7)
    twin, twin_store = AR1(**options), replay.create(store.name, **store.options())
    rng = np.random.default_rng(7)
    for step in range(5):
        z, y = blobs([step % 3, 3 + step % 2], 12, seed=step)
        learner.learn_latents(z, [int(c) for c in y])
        labels = np.array([learner.labels.encode(int(c)) for c in y])
        twin.add_classes(len(learner.labels))
        zb, yb = z, labels
        if len(twin_store):
            zr, yr = twin_store.sample(options["replay_size"], rng)
            zb, yb = np.concatenate([z, zr]), np.r_[labels, yr]
        twin.learn_many(zb, yb)
        twin_store.add_many(z, labels)
    test, _ = blobs(list(range(5)), 10, seed=99)
    assert len(store) > options["replay_size"]  # each batch replayed a subset
    np.testing.assert_array_equal(
        learner.strategy.predict_proba_many(test), twin.predict_proba_many(test)
    )
    np.testing.assert_array_equal(learner.strategy.state_dict()["cw"], twin.state_dict()["cw"])


def fake_build(tmp: Path, latent_shape: tuple[int, ...] = (192, 2, 2)) -> Path:
    """A ``block14`` build with random weights: the layers above the cut, no real backbone."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite_pytorch import EfficientNet

    from edgecl.backbones.build import ARCH, split

    torch.manual_seed(0)
    top: Any = split(EfficientNet.from_name(ARCH), "block14")[1]
    np.savez(tmp / "top.npz", **{k: v.numpy() for k, v in top.state_dict().items()})
    (tmp / "model.int8.onnx").write_bytes(b"not used")

    def entry(name: str) -> dict[str, Any]:
        return {"file": name, "sha256": hashlib.sha256((tmp / name).read_bytes()).hexdigest()}

    manifest = {
        "name": "fake-block14",
        "cut": "block14",
        "latent_shape": list(latent_shape),
        "model": entry("model.int8.onnx"),
        "top": entry("top.npz"),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    return tmp / "manifest.json"


def test_a_pretrained_top_trains_with_batchnorm_frozen(tmp_path: Path) -> None:
    manifest = fake_build(tmp_path)
    s = AR1(top=str(manifest), epochs=1, batch_size=16)
    assert s.net.features == 1280 and s.net.dim == 192 * 2 * 2
    s.add_classes(2)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(24, 192, 2, 2)).astype(np.float32)
    y = np.arange(24) % 2
    before = params(s)
    s.learn_many(z, y)
    after = params(s)
    frozen = [k for k in before if "bn" in k]
    assert frozen and all(np.array_equal(before[k], after[k]) for k in frozen)
    trained = list(s.net.si.total)
    assert trained and all("bn" not in k for k in trained)
    assert any(not np.array_equal(before[k], after[k]) for k in trained)
    # Latents flat or at their block shape are the same input.
    np.testing.assert_array_equal(s.predict_proba_many(z.reshape(24, -1)), s.predict_proba_many(z))
    copy = strategies.create("ar1", **codec.unpackb(codec.packb(s.options())))
    copy.load_state_dict(codec.unpackb(codec.packb(s.state_dict())))
    np.testing.assert_array_equal(copy.predict_proba_many(z), s.predict_proba_many(z))


def test_ar1_learns_block_latents_through_the_learner(tmp_path: Path) -> None:
    manifest = fake_build(tmp_path)
    shape = (192, 2, 2)
    centres = np.random.default_rng(1).normal(size=(3, *shape)).astype(np.float32)
    store = replay.create("latent_replay", max_bytes=60 * (192 * 4 + 12))
    ar1 = strategies.create(
        "ar1", top=str(manifest), replay_size=30, epochs=2, batch_size=16, lr=0.1
    )
    learner = Learner(PrecomputedBackbone(shape), ar1, store)
    rng = np.random.default_rng(2)
    for _ in range(3):
        y = rng.permutation(np.repeat(np.arange(3), 10))
        learner.learn_latents(centres[y] + 0.5 * rng.normal(size=(30, *shape)), y.tolist())
    test_y = np.repeat(np.arange(3), 10)
    test_z = centres[test_y] + 0.5 * rng.normal(size=(30, *shape))
    assert np.mean(np.array(learner.predict_many(test_z)) == test_y) >= 0.9
    assert len(store) == 60


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="top"):
        AR1(top="/no/such/manifest.json")
    with pytest.raises(ValueError, match="momentum"):
        AR1(momentum=1.0)
    with pytest.raises(ValueError, match="hidden"):
        AR1(top=__file__, hidden=3)
    with pytest.raises(ValueError, match="train_chunk"):
        AR1(train_chunk=0)


def test_training_in_chunks_gives_the_whole_minibatchs_step() -> None:
    """Activations are kept for a few latents at a time; the update is the minibatch's."""
    z, y = blobs([0, 1, 2], 32, dim=12)
    states = []
    for chunk in (128, 8, 5):  # one pass, exact chunks, a ragged last chunk
        s = AR1(hidden=16, lr=0.05, top_lr=0.01, batch_size=32, epochs=2, train_chunk=chunk)
        s.add_classes(3)
        s.learn_many(z, y)
        states.append(s.state_dict())
    for other in states[1:]:
        np.testing.assert_allclose(other["cw"], states[0]["cw"], rtol=1e-5, atol=1e-6)
        for name, tensor in states[0]["net"]["tensors"].items():
            np.testing.assert_allclose(other["net"]["tensors"][name], tensor, atol=1e-6)


def test_chunked_gradients_of_the_layers_above_the_cut_are_the_minibatchs(
    tmp_path: Path,
) -> None:
    """block15 and the head, batch normalisation frozen: the chunks' summed gradients are
    the plain mean cross-entropy's over the whole minibatch."""
    import torch.nn.functional as F  # noqa: N812

    s = AR1(top=str(fake_build(tmp_path)))
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(21, s.net.dim)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 3, size=21))
    w = torch.from_numpy(rng.normal(scale=0.1, size=(3, s.net.features)).astype(np.float32))
    wrt = [p for _, p in s.net._trainable()] + [w.requires_grad_(True)]
    chunked = s.net._minibatch_grads(x, y, wrt)
    loss = F.cross_entropy(s.net._forward(x) @ w.T, y)
    plain = torch.autograd.grad(loss, wrt)
    for a, b in zip(chunked, plain, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-7)


def test_an_ar1_batch_through_a_pretrained_top_is_the_same_in_chunks(tmp_path: Path) -> None:
    """Whole minibatches per forward pass (the straightforward way) or a few latents at a
    time: the same weights, importances and predictions after two batches."""
    manifest = str(fake_build(tmp_path))
    z, y = blobs([0, 1, 2], 12, dim=192 * 2 * 2)
    states, probas = [], []
    for chunk in (16, 3):
        s = AR1(top=manifest, epochs=2, batch_size=16, lr=0.05, top_lr=0.01, train_chunk=chunk)
        s.add_classes(3)
        s.learn_many(z[:20], y[:20])
        s.learn_many(z[20:], y[20:])
        states.append(s.state_dict())
        probas.append(s.predict_proba_many(z))
    reference, other = states
    np.testing.assert_allclose(other["cw"], reference["cw"], rtol=1e-4, atol=1e-6)
    for part in ("tensors", "omega", "theta_star"):
        for name, tensor in reference["net"][part].items():
            np.testing.assert_allclose(
                other["net"][part][name], tensor, rtol=1e-4, atol=1e-6, err_msg=name
            )
    np.testing.assert_allclose(probas[1], probas[0], rtol=1e-4, atol=1e-6)


def test_later_batches_keep_the_first_rate_unless_the_reference_rate_is_asked() -> None:
    z, y = np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1])
    default, reference = AR1(hidden=4), AR1(hidden=4, inc_lr=5e-5)
    for s in (default, reference):
        s.add_classes(2)
        s.learn_many(z, y)
    assert default.learning_rates() == (0.001, 0.001)
    assert reference.learning_rates() == (5e-5, 5e-5)


def test_a_batch_through_a_pretrained_top_trains_bit_for_bit_as_the_plain_loop(
    tmp_path: Path,
) -> None:
    """What training does to hold less memory (ReLU6 clamping in place, each chunk's
    gradient summed into the running sum as the backward pass makes it) changes no bit:
    the weights are those of the plain loop, with the module as built and
    ``torch.autograd.grad`` per chunk of the same size, summed chunk after chunk."""
    import torch.nn.functional as F  # noqa: N812

    from edgecl.backbones.build import load_top
    from edgecl.strategies.cwr_star import tied_row

    manifest = fake_build(tmp_path)
    z, y = blobs([0, 1, 2], 12, dim=192 * 2 * 2)
    lr, top_lr, mu, decay, epochs, size = 0.05, 0.01, 0.9, 0.0005, 2, 16
    s = AR1(top=str(manifest), lr=lr, top_lr=top_lr, epochs=epochs, batch_size=size)
    s.add_classes(3)
    s.learn_many(z, y)

    module: Any = load_top(manifest)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.requires_grad_(False)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    weights = [p for _, p in named]
    w = torch.zeros(4, 1280, requires_grad=True)  # the 3 classes and 7 zero outputs as one
    shift, scale = (torch.from_numpy(a) for a in tied_row(4, 7.0))
    velocity = [torch.zeros_like(p) for p in weights]
    w_velocity = torch.zeros_like(w)
    rng = np.random.default_rng([0, 0])  # AR1's minibatch order on its first batch
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), size):
            idx = order[start : start + size]
            x, yb = torch.from_numpy(z[idx]), torch.from_numpy(y[idx])
            total: list[Any] = []
            for c in range(0, len(idx), s.train_chunk):
                features = module(x[c : c + s.train_chunk].reshape(-1, 192, 2, 2))
                logits = features @ w.T + shift
                part = yb[c : c + s.train_chunk]
                loss = F.cross_entropy(logits, part, reduction="sum") / len(idx)
                grads = torch.autograd.grad(loss, [*weights, w])
                total = (
                    list(grads) if not total else [a + g for a, g in zip(total, grads, strict=True)]
                )
            with torch.no_grad():
                for k, p in enumerate(weights):
                    velocity[k].mul_(mu).add_(total[k] + decay * p)
                    p.add_(-top_lr * velocity[k])
                w_velocity.mul_(mu).add_(total[-1] * scale + decay * w)
                w.sub_(lr * w_velocity)
    trained = params(s)
    for name, p in named:
        np.testing.assert_array_equal(trained[name], p.detach().numpy(), err_msg=name)


@pytest.mark.parametrize("name", ["ar1", "latent_replay"])
def test_samples_the_probe_holds_back_are_left_out_as_if_never_given(name: str) -> None:
    """The probe holds some samples of each batch back; the rest are trained on without a
    copy of them kept through training (AR1 reads them from the whole batch, others get
    them copied): the model, the replay memory and the counts are bit for bit those of a
    learner without a probe given only the rest."""
    from edgecl.probe import ProbeSet

    options: dict[str, Any] = {"replay_size": 20, "epochs": 2, "batch_size": 8, "lr": 0.1}
    if name == "ar1":
        options["hidden"] = 8

    def learner(probe: ProbeSet | None) -> Learner:
        store = replay.create("latent_replay", max_bytes=40 * (6 + 4 + 8))
        return Learner(
            IdentityBackbone(6), strategies.create(name, **options), store, seed=7, probe=probe
        )

    held, plain, twin = learner(ProbeSet(share=0.3, seed=1)), learner(None), ProbeSet(0.3, seed=1)
    for step in range(6):
        z, y = blobs([step % 3, 3 + step % 2], 12, seed=step)
        labels = [int(c) for c in y]
        kept = twin.divert(plain, z, labels, np.full(len(y), -1, np.int64))
        held.learn_latents(z, labels)
        plain.learn_latents(z[kept], [c for c, k in zip(labels, kept, strict=True) if k])
    assert held.probe is not None and 0 < held.probe.held == twin.held
    assert held.samples_learned == plain.samples_learned < 6 * 24
    assert held.class_counts == plain.class_counts
    # The kept rows were predicted first (test, then train) as the copied rows are.
    assert held.prequential.state_dict() == plain.prequential.state_dict()
    test, _ = blobs(list(range(5)), 10, seed=99)
    np.testing.assert_array_equal(
        held.strategy.predict_proba_many(test), plain.strategy.predict_proba_many(test)
    )
    assert held.store is not None and plain.store is not None
    for a, b in zip(held.store.items(), plain.store.items(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_frozen_batchnorm_keeps_no_activation_and_gives_torchs_gradient_bit_for_bit(
    tmp_path: Path,
) -> None:
    import copy

    from edgecl.strategies.ar1_norm import FrozenBatchNorm2d

    s = AR1(top=str(fake_build(tmp_path, (192, 7, 7))))
    frozen = s.net.module
    assert frozen is not None
    norms = [m for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(type(m) is FrozenBatchNorm2d for m in norms)
    plain = copy.deepcopy(frozen)  # torch's own batch normalisation, in evaluation mode
    for m in plain.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.__class__ = torch.nn.BatchNorm2d
    assert plain.state_dict().keys() == frozen.state_dict().keys()

    x = torch.relu(torch.randn(8, 192, 7, 7, generator=torch.Generator().manual_seed(3)))

    def run(module: Any) -> tuple[list[bytes], int]:
        kept: dict[int, int] = {}

        def pack(t: Any) -> Any:
            kept[t.data_ptr()] = t.numel() * t.element_size()
            return t

        weights = [p for p in module.parameters() if p.requires_grad]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = module(x)
        loss = (out * torch.linspace(-1, 1, out.shape[1])).sum()
        grads = torch.autograd.grad(loss, [*weights])
        return [out.detach().numpy().tobytes()] + [g.numpy().tobytes() for g in grads], sum(
            kept.values()
        )

    (mine, mine_kept), (theirs, theirs_kept) = run(frozen), run(plain)
    assert mine == theirs  # the features and every weight's gradient, bit for bit
    # What it no longer keeps: the input of each normalisation (block15's three, the head's).
    assert theirs_kept - mine_kept >= 8 * 49 * 4 * (1152 * 2 + 320 + 1280)


def test_kept_rows_are_predicted_in_place_as_the_copied_rows_are(tmp_path: Path) -> None:
    """AR1 predicts the rows a probe left in runs of ``predict_chunk`` read from the whole
    batch (a view where the rows are consecutive): the probabilities of the rows copied
    out, bit for bit."""
    from edgecl.memory import kept_proba

    s = AR1(top=str(fake_build(tmp_path)), epochs=1, batch_size=16)
    s.add_classes(3)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 192, 2, 2)).astype(np.float32)
    s.learn_many(z, np.arange(40) % 3)
    kept = np.ones(40, dtype=bool)
    kept[[3, 4, 17, 30, 39]] = False  # runs across gaps, runs of consecutive rows, a tail
    rows = np.flatnonzero(kept)
    np.testing.assert_array_equal(kept_proba(s, z, rows, None), s.predict_proba_many(z[rows]))
    np.testing.assert_array_equal(kept_proba(s, z, None, None), s.predict_proba_many(z))
