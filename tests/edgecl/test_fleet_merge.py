"""Fleet merges: exact for slda/ncm statistics, FedAvg aligned by label name for SGD heads,
and nothing learned between snapshot and merge is lost."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgecl import persistence, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.fleet import (
    Aggregator,
    Contribution,
    FleetMemory,
    apply_merged,
    contribution,
    from_arrays,
    merge,
    snapshot,
    to_arrays,
)
from edgecl.learner import Learner
from edgecl.types import Label

DIM = 6


def learner(strategy: str, **options: Any) -> Learner:
    return Learner(IdentityBackbone(DIM), strategies.create(strategy, **options))


def blobs(rng: np.random.Generator, labels: list[Label], n: int) -> tuple[Any, list[Label]]:
    centres = {label: rng.normal(0, 3, DIM) for label in labels}
    z = np.concatenate([centres[c] + rng.normal(0, 1, (n, DIM)) for c in labels])
    return z.astype(np.float32), [c for c in labels for _ in range(n)]


class Fleet:
    """Devices and a server exchanging contributions the way the daemon does."""

    def __init__(self, devices: list[Learner]) -> None:
        self.devices = devices
        self.memory = [FleetMemory() for _ in devices]
        self.server = Aggregator()

    def send(self) -> list[tuple[Any, Contribution]]:
        sent = []
        for i, d in enumerate(self.devices):
            snap = snapshot(d)
            part = contribution(snap, self.memory[i])
            if not self.memory[i].holds(snap):  # else the server's entry is still right
                header, arrays = to_arrays(part)  # through the wire format
                self.server.update(f"dev{i}", from_arrays(header, arrays))
            sent.append((snap, part))
        return sent

    def apply(self, sent: list[tuple[Any, Contribution]]) -> None:
        merged = self.server.merged()
        assert merged is not None
        for i, (d, (snap, part)) in enumerate(zip(self.devices, sent, strict=True)):
            self.memory[i] = apply_merged(d, merged, snap, part, self.memory[i], 1)

    def round(self) -> None:
        self.apply(self.send())


def proba(model: Learner, z: Any, order: list[Label]) -> Any:
    p = model.predict_proba_latents(z)
    return p[:, [model.labels.index(label) for label in order]]


def counts_of(model: Learner) -> dict[Label, int]:
    counts = model.strategy.counts.tolist()  # type: ignore[attr-defined]
    return dict(zip(model.labels.labels, counts, strict=True))


def rows_of(model: Learner) -> Any:
    state = model.strategy.state_dict()
    return state["cw" if "cw" in state else "w"]


def test_ncm_merge_equals_one_learner_on_the_union() -> None:
    rng = np.random.default_rng(0)
    # Devices share a class ("b") and know classes in different orders.
    data = [blobs(rng, ["a", "b"], 20), blobs(rng, ["c", "b", 3], 15), blobs(rng, ["d"], 9)]
    fleet = Fleet([learner("ncm") for _ in data])
    union = learner("ncm")
    for device, (z, y) in zip(fleet.devices, data, strict=True):
        device.learn_latents(z, y)
        union.learn_latents(z, y)
    fleet.round()
    probe = rng.normal(0, 3, (50, DIM)).astype(np.float32)
    order = union.labels.labels
    for device in fleet.devices:
        assert sorted(map(str, device.labels.labels)) == sorted(map(str, order))
        assert np.abs(proba(device, probe, order) - proba(union, probe, order)).max() <= 1e-6


def test_slda_merge_equals_one_learner_on_the_union_with_a_shared_covariance() -> None:
    """With the covariance fixed after a base (the paper's fixed-covariance variant) the
    union learner's covariance is the base's, and the merge is exact."""
    rng = np.random.default_rng(1)
    base = blobs(rng, ["base0", "base1"], 40)
    options = {"covariance_samples": len(base[1])}
    fleet = Fleet([learner("slda", **options) for _ in range(3)])
    union = learner("slda", **options)
    fleet.devices[0].learn_latents(*base)
    union.learn_latents(*base)
    fleet.round()  # the base reaches every device
    data = [blobs(rng, ["x", "y"], 25), blobs(rng, ["base0", "z"], 30), blobs(rng, ["w"], 12)]
    for device, (z, y) in zip(fleet.devices, data, strict=True):
        device.learn_latents(z, y)
        union.learn_latents(z, y)
    fleet.round()
    probe = rng.normal(0, 3, (60, DIM)).astype(np.float32)
    order = union.labels.labels
    for device in fleet.devices:
        gap = np.abs(proba(device, probe, order) - proba(union, probe, order)).max()
        assert gap <= 1e-6


def test_slda_merge_pools_the_scatter_with_the_between_device_correction() -> None:
    """Plastic covariance: the merged scatter is the devices' scatters plus
    ``Σ n_dc (μ_dc − μ_c)(μ_dc − μ_c)ᵀ``, counts and means those of the union."""
    rng = np.random.default_rng(2)
    data = [blobs(rng, ["a", "b"], 30), blobs(rng, ["b", "c"], 20)]
    fleet = Fleet([learner("slda") for _ in data])
    for device, (z, y) in zip(fleet.devices, data, strict=True):
        device.learn_latents(z, y)
    heads = [d.strategy for d in fleet.devices]
    scatters = [h.n_updates * h.sigma for h in heads]  # type: ignore[attr-defined]
    updates = sum(h.n_updates for h in heads)  # type: ignore[attr-defined]
    means = [{lab: h.means[i] for i, lab in enumerate(d.labels.labels)}  # type: ignore[attr-defined]
             for h, d in zip(heads, fleet.devices, strict=True)]  # fmt: skip
    fleet.round()
    z_all = np.concatenate([z for z, _ in data]).astype(np.float64)
    y_all = [label for _, y in data for label in y]
    merged = fleet.devices[0].strategy
    correction = np.zeros((DIM, DIM))
    for label in ["a", "b", "c"]:
        mu = z_all[[i for i, y in enumerate(y_all) if y == label]].mean(axis=0)
        row = fleet.devices[0].labels.index(label)
        assert np.allclose(merged.means[row], mu)  # type: ignore[attr-defined]
        for dev, (_, y) in zip(means, data, strict=True):
            if label in dev:
                d = dev[label] - mu
                correction += y.count(label) * np.outer(d, d)
    total = merged.n_updates * merged.sigma  # type: ignore[attr-defined]
    assert merged.n_updates == updates  # type: ignore[attr-defined]
    assert np.allclose(total, scatters[0] + scatters[1] + correction)


@pytest.mark.parametrize("strategy", ["slda", "ncm"])
def test_statistics_learned_during_a_round_are_kept(strategy: str) -> None:
    """A round sends a snapshot; samples learned before the merge arrives stay learned, and
    the next round sends nothing twice."""
    rng = np.random.default_rng(3)
    a, b, late = blobs(rng, ["a"], 20), blobs(rng, ["b"], 20), blobs(rng, ["a", "late"], 10)
    fleet = Fleet([learner(strategy), learner(strategy)])
    union = learner(strategy)
    for device, data in zip(fleet.devices, [a, b], strict=True):
        device.learn_latents(*data)
        union.learn_latents(*data)
    sent = fleet.send()
    fleet.devices[0].learn_latents(*late)  # between snapshot and merge
    union.learn_latents(*late)
    fleet.apply(sent)
    counts = counts_of(fleet.devices[0])
    assert counts == {"a": 30, "b": 20, "late": 10}
    assert fleet.devices[1].labels.labels == ["b", "a"]  # "late" comes next round
    fleet.round()
    probe = rng.normal(0, 3, (40, DIM)).astype(np.float32)
    order = union.labels.labels
    for device in fleet.devices:
        counts = counts_of(device)
        assert counts == {"a": 30, "b": 20, "late": 10}
        if strategy == "ncm":
            assert np.abs(proba(device, probe, order) - proba(union, probe, order)).max() <= 1e-6


def test_a_device_resending_after_a_crash_is_not_counted_twice() -> None:
    rng = np.random.default_rng(4)
    fleet = Fleet([learner("ncm"), learner("ncm")])
    fleet.devices[0].learn_latents(*blobs(rng, ["a"], 10))
    fleet.devices[1].learn_latents(*blobs(rng, ["b"], 10))
    fleet.send()  # device 0 dies before applying; the server holds its part
    fleet.round()
    for device in fleet.devices:
        assert device.strategy.counts.tolist() == [10, 10]  # type: ignore[attr-defined]


@pytest.mark.parametrize("strategy", ["latent_replay", "cwr_star"])
def test_fedavg_aligns_classes_by_label_and_weights_by_samples(strategy: str) -> None:
    rng = np.random.default_rng(5)
    data = [blobs(rng, ["cat", "dog"], 30), blobs(rng, ["bird", "dog", "cat"], 10)]
    fleet = Fleet([learner(strategy, lr=0.1) for _ in data])
    for device, (z, y) in zip(fleet.devices, data, strict=True):
        device.learn_latents(z, y)
    w = [{lab: rows_of(d)[i] for i, lab in enumerate(d.labels.labels)} for d in fleet.devices]
    fleet.round()
    for device in fleet.devices:
        rows = {lab: rows_of(device)[i] for i, lab in enumerate(device.labels.labels)}
        assert np.allclose(rows["dog"], (30 * w[0]["dog"] + 10 * w[1]["dog"]) / 40, atol=1e-6)
        assert np.allclose(rows["bird"], w[1]["bird"], atol=1e-6)
        assert sorted(device.labels.labels) == ["bird", "cat", "dog"]
        test = np.concatenate([z for z, _ in data])
        labels = [y for _, ys in data for y in ys]
        assert np.mean(np.array(device.predict_many(test)) == np.array(labels)) > 0.9


def test_fedavg_keeps_the_local_drift_since_the_snapshot() -> None:
    rng = np.random.default_rng(6)
    fleet = Fleet([learner("naive", lr=0.1), learner("naive", lr=0.1)])
    fleet.devices[0].learn_latents(*blobs(rng, ["a", "b"], 10))
    fleet.devices[1].learn_latents(*blobs(rng, ["a", "c"], 10))
    sent = fleet.send()
    before = fleet.devices[0].strategy.state_dict()["w"].copy()
    fleet.devices[0].learn_latents(*blobs(rng, ["a", "b"], 5))
    drift = fleet.devices[0].strategy.state_dict()["w"] - before
    merged = merge([part for _, part in sent])
    fleet.apply(sent)
    after = fleet.devices[0].strategy.state_dict()["w"]
    for i, label in enumerate(["a", "b"]):
        j = merged.labels.index(label)
        assert np.allclose(after[i], merged.arrays["w"][j] + drift[i], atol=1e-6)


def test_mismatched_contributions_are_refused() -> None:
    server = Aggregator()
    a = Contribution("statistics", "ncm", ["a"], np.array([1]), {"sums": np.ones((1, 3))})
    b = Contribution("statistics", "slda", ["a"], np.array([1]), {"sums": np.ones((1, 3))})
    c = Contribution("statistics", "ncm", ["a"], np.array([1]), {"sums": np.ones((1, 4))})
    server.update("x", a)
    for bad in (b, c):
        with pytest.raises(ValueError, match="cannot merge"):
            server.update("y", bad)
    assert list(server.parts) == ["x"]
    with pytest.raises(ValueError, match="do not match its labels"):
        from_arrays(to_arrays(a)[0], [np.array([1, 2]), np.ones((1, 3))])


def test_a_merge_that_does_not_fit_changes_nothing() -> None:
    rng = np.random.default_rng(7)
    device = learner("ncm")
    device.learn_latents(*blobs(rng, ["a"], 5))
    snap = snapshot(device)
    part = contribution(snap, FleetMemory())
    wrong = Contribution("statistics", "ncm", ["b"], np.array([3]), {"sums": np.ones((1, DIM + 1))})
    version = device.model_version
    with pytest.raises(ValueError, match="cannot merge"):
        apply_merged(device, wrong, snap, part, FleetMemory(), 1)
    assert device.labels.labels == ["a"] and device.model_version == version


def test_the_server_keeps_its_devices_across_a_restart(tmp_path: Any) -> None:
    rng = np.random.default_rng(8)
    fleet = Fleet([learner("slda"), learner("slda")])
    fleet.devices[0].learn_latents(*blobs(rng, ["a", "b"], 10))
    fleet.devices[1].learn_latents(*blobs(rng, ["c"], 10))
    fleet.send()
    persistence.save(tmp_path / "fleet.state", fleet.server.state_dict())
    again = Aggregator.from_state(persistence.load(tmp_path / "fleet.state"))
    before, after = fleet.server.merged(), again.merged()
    assert before is not None and after is not None
    assert after.labels == before.labels and np.array_equal(after.counts, before.counts)
    for name, array in before.arrays.items():
        assert np.allclose(after.arrays[name], array, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="not a fleet server's state"):
        Aggregator.from_state({"round": 1})
