"""ExStream's head: an MLP trained by Adam on the buffer after the new sample is merged."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl import Learner, replay
from edgecl.backbones import IdentityBackbone
from edgecl.replay.compress import item_nbytes
from edgecl.replay.exstream import BOOKKEEPING_NBYTES
from edgecl.strategies.exstream import ExStream
from edgecl.strategies.head import SoftmaxHead
from edgecl.strategies.mlp import AdamMLP
from edgecl.types import FloatArray, IntArray


def test_the_head_trains_on_the_buffer_with_the_new_sample_merged_in() -> None:
    seen: list[tuple[FloatArray, IntArray]] = []

    class Spy(ExStream):
        def learn_many(self, z: FloatArray, y: IntArray) -> None:
            seen.append((z.copy(), y.copy()))
            super().learn_many(z, y)

    per_item = item_nbytes("float32", (3,)) + BOOKKEEPING_NBYTES
    store = replay.create("exstream", max_bytes=10 * per_item, encoding="float32")
    learner = Learner(IdentityBackbone(3), Spy(hidden=4), store)
    rng = np.random.default_rng(0)
    for _ in range(40):
        learner.learn_one(rng.normal(size=3).astype(np.float32), "a")
    z, y = seen[-1]
    held, labels = store.items()
    assert len(store) < 40  # the buffer is full: it merges
    np.testing.assert_array_equal(np.sort(z, axis=0), np.sort(held, axis=0))
    assert y.tolist() == labels.tolist()


def test_adam_mlp_steps_as_pytorch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    net = AdamMLP(hidden=7, lr=0.01, seed=3)
    net.grow(3, 5)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    with torch.no_grad():
        for layer, k in ((model[0], "1"), (model[2], "2")):
            layer.weight.copy_(torch.from_numpy(net.params["w" + k]))
            layer.bias.copy_(torch.from_numpy(net.params["b" + k]))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for start in (0, 8, 0, 8):
        net.step(x[start : start + 8], y[start : start + 8], np.ones(3, dtype=bool))
        loss = torch.nn.functional.cross_entropy(
            model(torch.from_numpy(x[start : start + 8])), torch.from_numpy(y[start : start + 8])
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(net.params["w1"], model[0].weight.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(net.params["w2"], model[2].weight.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(net.params["b2"], model[2].bias.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("hidden", [0, 16])
def test_both_heads_learn_separable_classes(hidden: int) -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(4, dtype=np.float32) * 3
    y = rng.integers(0, 4, size=200)
    z = centres[y] + rng.normal(scale=0.3, size=(200, 4)).astype(np.float32)
    s = ExStream(hidden=hidden, lr=0.01, batch_size=16)
    s.add_classes(4)
    for _ in range(5):
        s.learn_many(z[:150], y[:150])
    assert np.mean(s.predict_proba_many(z[150:]).argmax(axis=1) == y[150:]) > 0.95


def test_a_state_saved_before_the_mlp_loads_as_the_linear_head() -> None:
    old = SoftmaxHead(lr=0.5)  # the old ExStream head and its state keys
    old.add_classes(2)
    old.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    s = ExStream()
    s.load_state_dict(old.state_dict())
    z = np.array([[2, 0], [0, 2], [1, 1]], np.float32)
    np.testing.assert_allclose(s.predict_proba_many(z), old.predict_proba_many(z), atol=1e-6)
    assert s.hidden == 0 and s.options()["hidden"] == 0
    s.learn_many(z[:2], np.array([0, 1]))  # and it trains on
