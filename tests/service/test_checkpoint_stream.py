"""Checkpoints written a piece at a time: an AR1 daemon killed with -9 comes back exactly,
and checkpoints written whole (before streaming) still load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgecl import Learner, persistence, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.probe import ProbeSet
from edgecl.state_views import shared_arrays
from service.checkpoints import Checkpoints
from service.writer import LearnJob, Writer
from tests.service.daemon import Daemon, identity_env

DIM = 8
CLASSES = ["ant", "bee", "cat"]
PROBES = [[float(i == k) + 0.1 * j for i in range(DIM)] for k in range(3) for j in range(2)]


def ar1_env(**settings: str) -> dict[str, str]:
    """An AR1 daemon with a trainable layer above the latents and its latent replay memory,
    checkpointing every few samples."""
    return identity_env(
        DIM,
        strategy__name="ar1",
        strategy__options=json.dumps({"hidden": 6, "epochs": 2, "batch_size": 8, "lr": 0.05}),
        store__kind="latent_replay",
        store__max_bytes=str(64 << 10),
        checkpoint_every_samples="10",
        **settings,
    )


def learn(url: str, requests: int) -> None:
    rng = np.random.default_rng(0)
    with httpx.Client(base_url=url, timeout=60.0) as http:
        for r in range(requests):
            labels = [CLASSES[(r + k) % 3] for k in range(4)]
            samples = [
                {
                    "features": (rng.normal(0, 0.3, DIM) + np.eye(DIM)[CLASSES.index(y)]).tolist(),
                    "label": y,
                    "id": f"s-{r}-{k}",
                }
                for k, y in enumerate(labels)
            ]
            reply = http.post("/learn", json={"samples": samples})
            assert reply.status_code == 200, reply.text


def figures(url: str) -> dict[str, Any]:
    stats = httpx.get(f"{url}/stats", timeout=30).json()
    reply = httpx.post(
        f"{url}/predict", json={"samples": [{"features": p} for p in PROBES], "top_k": 3}
    )
    assert reply.status_code == 200, reply.text
    keys = ("samples_learned", "model_version", "classes", "store", "prequential")
    return {**{k: stats.get(k) for k in keys}, "predictions": reply.json()}


@pytest.mark.slow
def test_an_ar1_daemon_killed_after_streamed_checkpoints_restores_exactly(
    tmp_path: Path,
) -> None:
    data, env = tmp_path / "data", ar1_env()
    with Daemon(data, env) as daemon:
        learn(daemon.url, 12)
        before = figures(daemon.url)
        daemon.process.kill()
        daemon.process.wait(30)
    saved = sorted((data / "checkpoints").glob("checkpoint-*.ckpt"))
    assert saved and before["samples_learned"] == 48 and before["store"]["items"] > 0
    # What a restart reads: every checkpoint kept is whole and verifies.
    for path in saved:
        assert persistence.check_file(path)["wal_seq"] > 0
    with Daemon(data, env) as daemon:
        assert figures(daemon.url) == before  # to the last bit of every score


def state(i: int) -> dict[str, Any]:
    big = np.arange(40_000, dtype=np.int8).reshape(100, 400) + np.int8(i)
    return {"model_version": i, "codes": big, "w": np.full((3, 4), i, np.float32), "n": [i]}


def test_a_checkpoint_written_whole_before_streaming_still_loads(tmp_path: Path) -> None:
    # The file as the checkpoints before streaming wrote it: the whole body built first.
    old = persistence.snapshot_parts({"wal_seq": 7, "state": state(1)})
    persistence.write_atomic(tmp_path / "checkpoint-000000000007.ckpt", old)
    ckpts = Checkpoints(tmp_path)
    loaded = ckpts.load_latest()
    assert loaded is not None and loaded[1] == 7
    np.testing.assert_array_equal(loaded[0]["codes"], state(1)["codes"])
    # A streamed one after it is the same format, byte for byte, and the newer one wins.
    path = ckpts.save(state(2), 9)
    assert path.read_bytes() == persistence.dump_snapshot({"wal_seq": 9, "state": state(2)})
    again = Checkpoints(tmp_path).load_latest()
    assert again is not None and again[1] == 9 and again[0]["n"] == [2]


def test_a_checkpoint_that_cannot_be_serialised_leaves_the_last_one_alone(tmp_path: Path) -> None:
    ckpts = Checkpoints(tmp_path)
    ckpts.save(state(1), 3)
    bad = {**state(2), "odd": np.array(["text"])}  # a dtype a checkpoint cannot hold
    with pytest.raises(TypeError, match="dtype"):
        ckpts.save(bad, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000000000003.ckpt"]
    loaded = Checkpoints(tmp_path).load_latest()
    assert loaded is not None and loaded[1] == 3


def test_a_checkpoint_shares_the_learners_arrays_and_holds_the_copied_states_bytes(
    tmp_path: Path,
) -> None:
    ar1 = strategies.create("ar1", hidden=6, epochs=2, batch_size=8, lr=0.05)
    store = replay.create("latent_replay", max_bytes=64 << 10)
    learner = Learner(IdentityBackbone(DIM), ar1, store, probe=ProbeSet(share=0.2))
    writer, rng = Writer(learner, checkpoints=Checkpoints(tmp_path)), np.random.default_rng(0)
    for r in range(4):
        labels = [CLASSES[(r + k) % 3] for k in range(30)]
        z = rng.normal(0, 0.3, (30, DIM)) + np.eye(DIM)[[CLASSES.index(y) for y in labels]]
        job = LearnJob(learner.check_batch(z.astype(np.float32), labels), [None] * 30, "test")
        writer.learn_batch([job])
        job.future.result()
    # Inside shared_arrays a state holds the learner's own arrays (two states share them);
    # outside, copies.
    with shared_arrays():
        a, b = learner.state_dict(), learner.state_dict()
    c = learner.state_dict()
    for key in ("codes", "scales", "labels"):
        held = a["store"]["state"]["items"][key]
        assert np.shares_memory(held, b["store"]["state"]["items"][key])
        assert not np.shares_memory(held, c["store"]["state"]["items"][key])
    top = a["strategy"]["state"]["net"]
    for part in ("tensors", "omega", "theta_star"):
        assert top[part]
        for name, value in top[part].items():
            assert np.shares_memory(value, b["strategy"]["state"]["net"][part][name])
            assert not np.shares_memory(value, c["strategy"]["state"]["net"][part][name])
    del a, b
    # The writer's checkpoint (built from the shared arrays) is the copied state's bytes.
    assert writer.maybe_checkpoint(force=True)
    assert learner.probe is not None and len(learner.probe.store) > 0
    copied = {"learner": c, "recent_ids": [], "probe": learner.probe.state_dict()}
    (path,) = tmp_path.glob("checkpoint-*.ckpt")
    assert path.read_bytes() == persistence.dump_snapshot({"wal_seq": 0, "state": copied})
    # It restores the learner exactly.
    loaded = Checkpoints(tmp_path).load_latest()
    assert loaded is not None
    restored = Learner.from_state(loaded[0]["learner"])
    probes = np.asarray(PROBES, np.float32)
    assert np.array_equal(
        restored.predict_proba_latents(probes), learner.predict_proba_latents(probes)
    )
