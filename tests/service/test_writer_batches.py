"""A micro-batch of several requests is learned as one step, each sample once."""

from __future__ import annotations

import numpy as np

from edgecl import Learner, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.batch import Batch
from service.writer import LearnJob, Writer


def test_requests_of_one_micro_batch_share_its_latents_and_skip_duplicates() -> None:
    writer = Writer(Learner(IdentityBackbone(2), strategies.create("ncm")))
    first = LearnJob(Batch(np.eye(2, dtype=np.float32), ["a", "b"]), ["1", "2"], "test")
    z = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    # Its "2" is the first request's second sample: acknowledged, not learned again.
    second = LearnJob(Batch(z, ["a", "b", "c"]), ["3", "2", None], "test")
    writer.learn_batch([first, second])
    assert first.future.result().duplicates == 0 and second.future.result().duplicates == 1
    learner = writer.learner
    counts = dict(zip(learner.labels.labels, learner.class_counts, strict=True))
    assert counts == {"a": 2, "b": 1, "c": 1} and learner.samples_learned == 4
    # The first request's samples are rows of the micro-batch's array now, unchanged.
    np.testing.assert_array_equal(first.batch.z, np.eye(2))
    assert first.batch.labels == ["a", "b"]
    np.testing.assert_array_equal(second.batch.z, z)  # some of it was not kept: its own
    np.testing.assert_array_equal(learner.predict_proba_latents(z).argmax(axis=1), [0, 1, 2])
