"""What every strategy promises, checked through the protocol alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecl import codec
from edgecl.calibration import auroc, softmax_t
from edgecl.openset import Calibration
from edgecl.protocols import Logits, MemoryReplay, Snapshot, Strategy
from edgecl.types import FloatArray, IntArray

Factory = Callable[..., Strategy]
DIM = 6


def expect(condition: object, message: str) -> None:
    """``AssertionError(message)`` unless ``condition`` (kept under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def blobs(classes: list[int], per_class: int, seed: int = 0) -> tuple[FloatArray, IntArray]:
    """Well-separated Gaussian blobs, one per class, in a shuffled order."""
    rng = np.random.default_rng(seed)
    centres = np.eye(DIM, dtype=np.float32) * 4.0
    y = np.repeat(np.asarray(classes, dtype=np.int64), per_class)
    z = centres[y] + rng.normal(scale=0.3, size=(len(y), DIM)).astype(np.float32)
    order = rng.permutation(len(y))
    return np.ascontiguousarray(z[order]), y[order]


def trained(make: Factory, classes: list[int], n_classes: int | None = None) -> Strategy:
    strategy = make()
    strategy.add_classes(n_classes if n_classes is not None else max(classes) + 1)
    z, y = blobs(classes, per_class=20)
    for start in range(0, len(y), 8):
        strategy.learn_many(z[start : start + 8], y[start : start + 8])
    return strategy


def check_inputs_are_not_mutated(make: Factory) -> None:
    strategy = make()
    strategy.add_classes(3)
    z, y = blobs([0, 1, 2], per_class=10)
    z_copy, y_copy = z.copy(), y.copy()
    strategy.learn_many(z, y)
    strategy.predict_proba_many(z)
    expect(np.array_equal(z, z_copy) and np.array_equal(y, y_copy), "inputs were changed")


def check_probabilities_are_finite_rows_that_sum_to_one(make: Factory) -> None:
    strategy = trained(make, [0, 1, 2])
    z, _ = blobs([0, 1, 2], per_class=5, seed=1)
    far = np.full((2, DIM), 1e4, dtype=np.float32)  # far from anything learned
    for batch in (z, far, z[:1]):
        proba = strategy.predict_proba_many(batch)
        expect(proba.dtype == np.float32, f"probabilities are {proba.dtype}, not float32")
        expect(proba.shape == (len(batch), 3), f"probabilities of shape {proba.shape}")
        expect(np.all(np.isfinite(proba)) and np.all(proba >= 0), "a probability is < 0 or nan")
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def check_it_learns_separable_blobs(make: Factory) -> None:
    strategy = trained(make, [0, 1, 2])
    z, y = blobs([0, 1, 2], per_class=10, seed=2)
    accuracy = float(np.mean(strategy.predict_proba_many(z).argmax(axis=1) == y))
    expect(accuracy >= 0.9, f"accuracy {accuracy:.2f} on separable blobs")


def check_before_any_sample_probabilities_are_uniform(make: Factory) -> None:
    strategy = make()
    strategy.add_classes(4)
    proba = strategy.predict_proba_many(np.zeros((2, DIM), dtype=np.float32))
    np.testing.assert_allclose(proba, 0.25)


def check_a_class_never_trained_gets_probability_zero(make: Factory) -> None:
    strategy = trained(make, [0, 1], n_classes=4)
    z, _ = blobs([0, 1, 2, 3], per_class=5, seed=3)
    proba = strategy.predict_proba_many(z)
    expect(proba.shape == (len(z), 4), f"probabilities of shape {proba.shape}")
    expect(np.all(proba[:, 2:] == 0.0), "an untrained class got a probability above 0")


def check_state_round_trips_through_msgpack(make: Factory) -> None:
    strategy = trained(make, [0, 1, 2])
    z, _ = blobs([0, 1, 2], per_class=5, seed=4)
    restored = make(**codec.roundtrip(strategy.options()))
    restored.load_state_dict(codec.roundtrip(strategy.state_dict()))
    np.testing.assert_array_equal(restored.predict_proba_many(z), strategy.predict_proba_many(z))
    # Learning goes on identically after the round trip (counters, seeds included).
    for s in (strategy, restored):
        s.add_classes(4)
        s.learn_many(*blobs([3, 0], per_class=4, seed=5))
    np.testing.assert_array_equal(restored.predict_proba_many(z), strategy.predict_proba_many(z))


def check_state_is_a_snapshot_not_a_view(make: Factory) -> None:
    strategy = trained(make, [0, 1])
    before = codec.packb(strategy.state_dict())
    state = strategy.state_dict()
    strategy.learn_many(*blobs([0, 1], per_class=4, seed=6))
    expect(codec.packb(state) == before, "a returned state changed with later learning")


def check_a_new_class_can_appear_at_any_time(make: Factory) -> None:
    strategy = trained(make, [0, 1])
    strategy.add_classes(3)
    z_new, y_new = blobs([2], per_class=12, seed=7)
    for i in range(len(z_new)):  # one sample at a time, as the daemon's learn_one does
        strategy.learn_many(z_new[i : i + 1], y_new[i : i + 1])
    z, _ = blobs([2], per_class=10, seed=8)
    proba = strategy.predict_proba_many(z)
    expect(proba.shape == (10, 3), f"probabilities of shape {proba.shape}")
    share = float(np.mean(proba.argmax(axis=1) == 2))
    expect(share >= 0.9, f"a class added late is predicted for {share:.0%} of its samples")


def check_intermediate_cut_latents_are_flattened(make: Factory) -> None:
    z, y = blobs([0, 1], per_class=10)
    flat_s, cube_s = make(), make()
    for s, batch in ((flat_s, z), (cube_s, z.reshape(len(z), 1, 2, 3))):
        s.add_classes(2)
        s.learn_many(batch, y)
    np.testing.assert_array_equal(
        cube_s.predict_proba_many(z.reshape(len(z), 1, 2, 3)), flat_s.predict_proba_many(z)
    )


def check_options_round_trip(make: Factory) -> None:
    options = make().options()
    rebuilt = make(**codec.roundtrip(options))
    expect(rebuilt.options() == options, f"options {rebuilt.options()} != {options}")


def check_bad_options_raise_a_value_error_naming_the_option(make: Factory) -> None:
    options = make().options()
    expect(options, "no options to check")
    for key in options:
        for bad in (-1, "x", float("nan")):
            try:
                make(**{key: bad})
            except ValueError as exc:
                expect(key in str(exc), f"{key}={bad!r}: the error does not name it: {exc}")
            else:
                raise AssertionError(f"{key}={bad!r} was accepted")


def check_bad_inputs_raise_value_errors_and_change_nothing(make: Factory) -> None:
    strategy = trained(make, [0, 1])
    bad: list[tuple[Any, Any, str]] = [
        (np.zeros((2, DIM + 1), np.float32), np.array([0, 1]), "dimension mismatch"),
        (np.zeros((2, DIM), np.float32), np.array([0, 2]), "out of range"),
        (np.zeros((2, DIM), np.float32), np.array([0]), "labels"),
    ]
    before = codec.packb(strategy.state_dict())
    for z, y, message in bad:
        try:
            strategy.learn_many(z, y)
        except ValueError as exc:
            expect(message in str(exc), f"the error for {message} says: {exc}")
        else:
            raise AssertionError(f"learn_many accepted a batch with {message}")
    try:
        strategy.predict_proba_many(np.zeros((1, DIM - 1), np.float32))
    except ValueError as exc:
        expect("dimension mismatch" in str(exc), f"the error for a short latent says: {exc}")
    else:
        raise AssertionError("predict_proba_many accepted a latent of another dimension")
    expect(codec.packb(strategy.state_dict()) == before, "a refused batch changed the state")


def check_novel_inputs_score_higher_than_taught_ones(make: Factory) -> None:
    """Through :mod:`edgecl.openset` (the head's novelty, or the fallback): blobs of
    classes never taught are more novel than fresh samples of taught ones."""
    strategy = trained(make, [0, 1, 2])
    known, _ = blobs([0, 1, 2], per_class=20, seed=1)
    novel, _ = blobs([3, 4, 5], per_class=20, seed=1)
    answer = Calibration().predict
    score = auroc(answer(strategy, known).novelty, answer(strategy, novel).novelty)
    expect(score > 0.95, f"novel blobs are told from taught ones with AUROC {score:.3f}")


def check_logits_softmax_to_the_probabilities(make: Factory) -> None:
    """For strategies with ``logits_many``: its softmax is ``predict_proba_many``."""
    strategy = trained(make, [0, 1], n_classes=3)
    if not isinstance(strategy, Logits):
        return
    z, _ = blobs([0, 1, 2], per_class=5, seed=1)
    logits = strategy.logits_many(z)
    expect(np.all(np.isneginf(logits[:, 2])), "a class never trained has a finite logit")
    proba = softmax_t(logits, 1.0)
    expect(np.allclose(proba, strategy.predict_proba_many(z), atol=1e-5), "softmax differs")


def check_a_snapshot_ignores_later_learning(make: Factory) -> None:
    """For strategies with ``snapshot()``: the copy answers as the head did, novelty too."""
    strategy = trained(make, [0, 1], n_classes=3)
    if not isinstance(strategy, Snapshot):
        return
    probe, _ = blobs([0, 1, 2], per_class=5, seed=1)
    before = Calibration().predict(strategy, probe)
    proba = strategy.predict_proba_many(probe)
    frozen = strategy.snapshot()
    expect(np.array_equal(frozen.predict_proba_many(probe), proba), "the copy answers differently")
    z, y = blobs([1, 2], per_class=20, seed=2)
    for start in range(0, len(y), 8):
        strategy.learn_many(z[start : start + 8], y[start : start + 8])
    expect(not np.array_equal(strategy.predict_proba_many(probe), proba), "nothing learned")
    frozen.predict_proba_many(z[:3])  # a head that keeps its last input's product recomputes
    expect(np.array_equal(frozen.predict_proba_many(probe), proba), "the copy saw later learning")
    after = Calibration().predict(frozen, probe)
    same = np.array_equal(after.proba, before.proba)
    expect(same and np.array_equal(after.novelty, before.novelty), "the snapshot changed")


def check_memory_replay_reads_its_memory_and_replays_nothing_itself(make: Factory) -> None:
    """For :class:`~edgecl.protocols.MemoryReplay` strategies: the learner concatenates
    nothing (``replay_size`` 0), the memory draw is left as it was, and ``learn_many`` is
    ``learn_with_memory`` with an empty memory."""
    strategy = trained(make, [0, 1], n_classes=3)
    if not isinstance(strategy, MemoryReplay):
        return
    expect(strategy.replay_size == 0, "a memory-replay strategy also asks for replay_size")
    state = strategy.state_dict()
    zm, ym = blobs([0, 1], per_class=6, seed=9)
    zm_copy, ym_copy = zm.copy(), ym.copy()
    z, y = blobs([2], per_class=6, seed=10)
    strategy.learn_with_memory(z, y, zm, ym)
    expect(np.array_equal(zm, zm_copy) and np.array_equal(ym, ym_copy), "memory changed")
    fresh, plain = make(**strategy.options()), make(**strategy.options())
    for s in (fresh, plain):
        s.load_state_dict(state)
    assert isinstance(fresh, MemoryReplay)
    fresh.learn_with_memory(z, y, zm[:0], ym[:0])
    plain.learn_many(z, y)
    same = codec.packb(fresh.state_dict()) == codec.packb(plain.state_dict())
    expect(same, "learn_many differs from learn_with_memory with an empty memory")


def strategy_checks() -> list[Callable[[Factory], None]]:
    """Every check, in a stable order."""
    return [
        check_inputs_are_not_mutated,
        check_probabilities_are_finite_rows_that_sum_to_one,
        check_it_learns_separable_blobs,
        check_before_any_sample_probabilities_are_uniform,
        check_a_class_never_trained_gets_probability_zero,
        check_state_round_trips_through_msgpack,
        check_state_is_a_snapshot_not_a_view,
        check_a_new_class_can_appear_at_any_time,
        check_intermediate_cut_latents_are_flattened,
        check_options_round_trip,
        check_bad_options_raise_a_value_error_naming_the_option,
        check_bad_inputs_raise_value_errors_and_change_nothing,
        check_novel_inputs_score_higher_than_taught_ones,
        check_logits_softmax_to_the_probabilities,
        check_a_snapshot_ignores_later_learning,
        check_memory_replay_reads_its_memory_and_replays_nothing_itself,
    ]
