"""GDumb's training schedule against the reference loop written with PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl.strategies.gdumb import GDumb
from edgecl.strategies.sgdr import sgdr_lr, train_sgdr


def test_the_schedule_warms_up_then_restarts_after_1_2_4_epochs() -> None:
    lrs = [sgdr_lr(e, 0.05, 0.0005) for e in range(16)]
    assert lrs[0] == pytest.approx(0.005) and lrs[1] == lrs[2] == 0.05
    restarts = [e for e in range(2, 16) if lrs[e] == 0.05]
    assert restarts == [2, 4, 8]
    assert min(lrs[8:16]) == lrs[15] < 0.003  # epochs=16 ends at the bottom of a cycle


def test_train_sgdr_is_the_reference_loop() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(scale=4.0, size=(24, 5)).astype(np.float32)  # large: the clip bites
    y = rng.integers(0, 3, size=24)
    w, b = np.zeros((3, 5), np.float32), np.zeros(3, np.float32)
    rng1 = np.random.default_rng(1)
    train_sgdr(
        w, b, x, y, lr=0.5, min_lr=0.005, epochs=5, batch_size=8, weight_decay=1e-3,
        momentum=0.9, clip=1.0, rng=rng1,
    )  # fmt: skip

    layer = torch.nn.Linear(5, 3)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, 1, 2, eta_min=0.005)
    order = np.random.default_rng(1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for epoch in range(5):
        if epoch == 0:
            opt.param_groups[0]["lr"] = 0.05
        elif epoch == 1:
            opt.param_groups[0]["lr"] = 0.5
        else:
            sched.step()
        perm = torch.from_numpy(order.permutation(24))
        for start in range(0, 24, 8):
            idx = perm[start : start + 8]
            loss = torch.nn.functional.cross_entropy(layer(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(layer.parameters(), 1.0)
            opt.step()
    np.testing.assert_allclose(w, layer.weight.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b, layer.bias.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_gdumb_defaults_are_the_references() -> None:
    options = GDumb().options()
    assert (options["momentum"], options["clip"], options["epochs"]) == (0.9, 10.0, 32)
    assert options["batch_size"] == 16 and options["weight_decay"] == 1e-6
    assert options["lr"] / options["min_lr"] == pytest.approx(100)  # 0.05 / 0.0005
