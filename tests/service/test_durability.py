"""Durability through the real daemon: nothing acknowledged is lost across kill -9, damaged
WAL tails and checkpoints are skipped (and logged), restarts restore the exact model."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgecl import Learner, strategies
from edgecl.backbones import BackboneChangedError, IdentityBackbone
from service.checkpoints import Checkpoints
from service.errors import StorageUnavailableError
from service.runtime import LearnerRuntime
from service.settings import DurabilitySettings
from service.wal import WriteAheadLog
from tests.service.conftest import ncm_runtime
from tests.service.daemon import ForkedDaemon, ForkServer, identity_env

DIM = 8
CLASSES = ["ant", "bee", "cat", "dog", "eel"]
PROBES = [[float(i == k) + 0.1 * j for i in range(DIM)] for k in range(5) for j in range(2)]


def daemon_env(**settings: str) -> dict[str, str]:
    return identity_env(DIM, **settings)


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    with ForkServer(daemon_env()) as server:
        yield server


def features(n: int, label: str) -> list[float]:
    """Sample ``n`` of class ``label``: near that class's corner, with noise."""
    noise = np.random.default_rng(n).normal(0.0, 0.3, DIM)
    noise[CLASSES.index(label)] += 1.0
    return [float(v) for v in noise]


def body(ids: list[str], labels: list[str]) -> dict[str, Any]:
    samples = [
        {"features": features(int(i.split("-")[1]), y), "label": y, "id": i}
        for i, y in zip(ids, labels, strict=True)
    ]
    return {"samples": samples}


def class_counts(url: str) -> dict[str, int]:
    stats = httpx.get(f"{url}/stats", timeout=10).json()
    counts = {label: c["samples"] for label, c in stats["classes"].items()}
    assert stats["samples_learned"] == sum(counts.values())
    return counts


def model_figures(url: str) -> dict[str, Any]:
    """Everything learning changes, and the exact scores for fixed inputs."""
    stats = httpx.get(f"{url}/stats", timeout=10).json()
    reply = httpx.post(
        f"{url}/predict", json={"samples": [{"features": p} for p in PROBES], "top_k": 5}
    )
    assert reply.status_code == 200, reply.text
    keys = (
        "samples_learned",
        "model_version",
        "classes",
        "store",
        "prequential",
        "probe",
        "calibration",
    )
    if stats.get("probe"):
        del stats["probe"]["age_s"]  # when it was scored, not what the model is
    return {**{k: stats.get(k) for k in keys}, "predictions": reply.json()}


# -- kill -9 in a loop -----------------------------------------------------------------------
@dataclass
class Request:
    ids: list[str]
    labels: list[str]


class Ledger:
    """What the clients know: acknowledged ids, and ids that were sent but not acknowledged
    (``maybe``: the daemon may or may not have learned them; they are retried)."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.Lock()
        self.rng = np.random.default_rng(seed)
        self.label: dict[str, str] = {}
        self.acked: set[str] = set()
        self.maybe: set[str] = set()
        self.retry: deque[Request] = deque()
        self.replies: Counter[str] = Counter()
        self.duplicates = 0  # samples of retries that had been learned before the kill
        self.count = 0

    def take(self) -> tuple[Request, set[str]]:
        """A request to send (a retry first) and the ids it marks as in flight for the
        first time."""
        with self.lock:
            if self.retry:
                request = self.retry.popleft()
            else:
                size = int(self.rng.integers(1, 5))
                ids = [f"s-{self.count + k}" for k in range(size)]
                self.count += size
                labels = [CLASSES[int(self.rng.integers(len(CLASSES)))] for _ in ids]
                self.label.update(zip(ids, labels, strict=True))
                request = Request(ids, labels)
            fresh = {i for i in request.ids if i not in self.maybe and i not in self.acked}
            self.maybe |= fresh
            return request, fresh

    def answered(self, request: Request, fresh: set[str], outcome: str) -> None:
        with self.lock:
            self.replies[outcome] += 1
            if outcome == "200":
                self.acked |= set(request.ids)
                self.maybe -= set(request.ids)
                return
            if outcome in ("503", "refused"):  # not queued: nothing of it was learned
                self.maybe -= fresh
            self.retry.append(request)

    def bounds(self) -> dict[str, tuple[int, int]]:
        with self.lock:
            low = Counter(self.label[i] for i in self.acked)
            high = low + Counter(self.label[i] for i in self.maybe)
            return {label: (low[label], high[label]) for label in high}


def client(url: str, ledger: Ledger, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as http:
        while not stop.is_set():
            request, fresh = ledger.take()
            try:
                reply = http.post("/learn", json=body(request.ids, request.labels))
            except httpx.ConnectError:  # nothing was sent
                ledger.answered(request, fresh, "refused")
                stop.wait(0.01)
                continue
            except httpx.TransportError:  # sent; the answer was lost with the daemon
                ledger.answered(request, fresh, "lost")
                continue
            outcome = str(reply.status_code)
            if outcome == "200" and reply.json()["accepted"] != len(request.ids):
                outcome = f"200 accepting {reply.json()['accepted']} of {len(request.ids)}"
            elif outcome == "200":
                ledger.duplicates += reply.json()["duplicates"]
            ledger.answered(request, fresh, outcome)


def assert_within(counts: dict[str, int], bounds: dict[str, tuple[int, int]], when: str) -> None:
    for label in set(counts) | set(bounds):
        low, high = bounds.get(label, (0, 0))
        assert low <= counts.get(label, 0) <= high, (when, label, counts, bounds)


def cycle_settings(cycle: int) -> dict[str, str]:
    """Vary the durability settings per restart: rare checkpoints (mostly WAL replay),
    frequent ones (checkpoint + short replay), group commit, small WAL segments."""
    return [
        {"wal_fsync": "always"},
        {"wal_fsync": "group", "checkpoint_every_samples": "25", "wal_segment_bytes": "4096"},
        {"checkpoint_every_samples": "60", "checkpoint_every_s": "0.2"},
        {"wal_fsync": "group", "wal_group_ms": "20", "wal_segment_bytes": "8192"},
    ][cycle % 4]


@pytest.mark.slow
def test_kill_9_loses_nothing_acknowledged(tmp_path: Path, forks: ForkServer) -> None:
    rng = np.random.default_rng(7)
    data, ledger, logs = tmp_path / "data", Ledger(seed=1), []
    kills = under_load = 0
    while kills < 26:
        env = daemon_env(**cycle_settings(kills))
        daemon = ForkedDaemon(forks, data, env).start()
        if kills % 6 == 5:
            # Killed while starting: restoring, cutting a torn tail, or not even there yet.
            threading.Event().wait(float(rng.uniform(0.0, 0.4)))
            daemon.kill()
            kills += 1
            logs.append(daemon.log.read_text())
            continue
        daemon.wait_ready()
        assert_within(class_counts(daemon.url), ledger.bounds(), f"restart {kills}")
        stop = threading.Event()
        clients = [
            threading.Thread(target=client, args=(daemon.url, ledger, stop), daemon=True)
            for _ in range(2)
        ]
        try:
            for thread in clients:
                thread.start()
            stop.wait(float(rng.uniform(0.05, 0.7)))
            daemon.kill()
        finally:
            stop.set()
            for thread in clients:
                thread.join(30)
        kills += 1
        under_load += 1
        logs.append(daemon.log.read_text())

    # The last start: everything not acknowledged is retried with its ids until it is;
    # each sample must then be counted exactly once.
    with ForkedDaemon(forks, data, daemon_env()) as daemon:
        assert_within(class_counts(daemon.url), ledger.bounds(), "final restart")
        with httpx.Client(base_url=daemon.url, timeout=10.0) as http:
            while ledger.retry:
                request = ledger.retry.popleft()
                reply = http.post("/learn", json=body(request.ids, request.labels))
                assert reply.status_code == 200, reply.text
                ledger.duplicates += reply.json()["duplicates"]
                ledger.answered(request, set(), "200")
        assert not ledger.maybe
        want = Counter(ledger.label[i] for i in ledger.acked)
        assert class_counts(daemon.url) == dict(want)
    logs.append(daemon.log.read_text())

    assert under_load >= 20 and len(ledger.acked) > 200
    assert set(ledger.replies) <= {"200", "503", "refused", "lost"}, ledger.replies
    # Some requests were learned but their reply died with the daemon: their retries were
    # acknowledged as duplicates, not learned twice (the exact counts above show that).
    assert ledger.replies["lost"] > 0 and ledger.duplicates > 0
    text = "\n".join(logs)
    assert "Traceback" not in text and "ERROR" not in text, text
    # Both paths of a restore ran: a checkpoint plus the WAL after it, and replay alone.
    assert re.search(r"restored checkpoint at WAL seq [1-9]", text)
    assert re.search(r"replayed [1-9]\d* samples from the WAL", text)


# -- restarts restore the exact model --------------------------------------------------------
def learn_concurrently(url: str, requests: int, first_id: int = 0) -> int:
    """Two clients send ``requests`` requests of 1-4 samples each, some without ids, so
    the writer merges several requests into one micro-batch; returns the next id."""
    rng = np.random.default_rng(first_id)
    jobs = []
    for _ in range(requests):
        size = int(rng.integers(1, 5))
        ids = [f"s-{first_id + k}" for k in range(size)]
        first_id += size
        jobs.append((ids, [CLASSES[int(rng.integers(len(CLASSES)))] for _ in ids]))

    def send(part: list[tuple[list[str], list[str]]], failures: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=10.0) as http:
            for n, (ids, labels) in enumerate(part):
                payload = body(ids, labels)
                if n % 3 == 0:
                    for sample in payload["samples"]:
                        del sample["id"]
                reply = http.post("/learn", json=payload)
                if reply.status_code != 200:
                    failures.append(reply.text)

    failures: list[str] = []
    threads = [threading.Thread(target=send, args=(jobs[k::2], failures)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    return first_id


# slda with a fast-growing shrinkage and a tight tolerance: its precision is factorised
# again every few dozen samples, in a thread, on both sides of each checkpoint.
SLDA_OFTEN = json.dumps({"shrinkage": 1e-2, "tolerance": 1e-6})


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ncm", "slda"])
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_restart_restores_the_exact_model(
    tmp_path: Path, forks: ForkServer, stop: str, strategy: str
) -> None:
    # A probe set, so that its held-back samples and scores must come back too.
    env = daemon_env(checkpoint_every_samples="70", probe_share="0.2", probe_every="25")
    if strategy == "slda":
        env.update(EDGECL_STRATEGY__NAME="slda", EDGECL_STRATEGY__OPTIONS=SLDA_OFTEN)
    with ForkedDaemon(forks, tmp_path / "data", env) as daemon:
        learn_concurrently(daemon.url, 80)
        before = model_figures(daemon.url)
        code = daemon.stop() if stop == "sigterm" else daemon.kill()
    assert code == (0 if stop == "sigterm" else -9)
    assert before["samples_learned"] > 100 and before["model_version"] < 80  # merged batches

    with ForkedDaemon(forks, tmp_path / "data", env) as daemon:
        after = model_figures(daemon.url)
    # Exact: the same scores to the last bit, the same counters, the same probe. After
    # kill -9 the WAL replays the micro-batches after the last checkpoint as they were
    # learned (one step each), so even model_version and the prequential figures agree.
    assert after == before
    # Either way the samples after the last checkpoint come back from the WAL: a stop
    # writes no checkpoint that is not due (flash), so fewer than 70 are replayed.
    replayed = re.search(r"replayed (\d+) samples", daemon.log.read_text())
    assert replayed is None or int(replayed.group(1)) < 70


# -- damaged files -------------------------------------------------------------------------
def learn_in_order(url: str, requests: int, size: int = 3, first: int = 0) -> list[Request]:
    """Sequential requests, so each is one micro-batch and one WAL record, in order; sample
    ids count up from ``first``."""
    sent = []
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for r in range(requests):
            ids = [f"s-{first + r * size + k}" for k in range(size)]
            labels = [CLASSES[(r + k) % len(CLASSES)] for k in range(size)]
            reply = http.post("/learn", json=body(ids, labels))
            assert reply.status_code == 200, reply.text
            sent.append(Request(ids, labels))
    return sent


def counts_of(requests: list[Request]) -> dict[str, int]:
    return dict(Counter(label for r in requests for label in r.labels))


@pytest.mark.slow
def test_truncated_wal_tail_is_cut_and_logged(tmp_path: Path, forks: ForkServer) -> None:
    data, env = tmp_path / "data", daemon_env()
    with ForkedDaemon(forks, data, env) as daemon:
        sent = learn_in_order(daemon.url, 6)
        daemon.kill()  # no checkpoint yet: everything is in the WAL
    (segment,) = (data / "wal").glob("wal-*.log")
    size = segment.stat().st_size
    os.truncate(segment, size - 7)  # the last record is torn

    with ForkedDaemon(forks, data, env) as daemon:
        assert class_counts(daemon.url) == counts_of(sent[:5])
        log = daemon.log.read_text()
        assert f"cutting the torn tail of {segment}" in log
        assert re.search(r"WARNING edgecl.durability: cutting the torn tail", log)
        # The lost request's ids were lost with it: resent, it is learned, not a duplicate.
        last = sent[-1]
        reply = httpx.post(f"{daemon.url}/learn", json=body(last.ids, last.labels))
        assert reply.json()["duplicates"] == 0
        daemon.kill()
    with ForkedDaemon(forks, data, env) as daemon:  # appended after the cut: readable
        assert class_counts(daemon.url) == counts_of(sent)
    assert "torn" not in daemon.log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flipped byte", "empty file"])
def test_damaged_newest_checkpoint_falls_back(
    tmp_path: Path, forks: ForkServer, damage: str
) -> None:
    data, env = tmp_path / "data", daemon_env(checkpoint_every_samples="6")
    with ForkedDaemon(forks, data, env) as daemon:
        sent = learn_in_order(daemon.url, 7)  # checkpoints after records 2, 4 and 6
        before = model_figures(daemon.url)
        daemon.kill()
    names = sorted(p.name for p in (data / "checkpoints").glob("*.ckpt"))
    assert names == ["checkpoint-000000000004.ckpt", "checkpoint-000000000006.ckpt"]
    newest = data / "checkpoints" / names[-1]
    if damage == "empty file":
        newest.write_bytes(b"")
    else:
        raw = bytearray(newest.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        newest.write_bytes(bytes(raw))

    with ForkedDaemon(forks, data, env) as daemon:
        # The older generation plus the WAL after it (records 5-7): nothing is missing.
        assert class_counts(daemon.url) == counts_of(sent)
        assert model_figures(daemon.url) == before
    log = daemon.log.read_text()
    assert re.search(rf"WARNING edgecl.durability: skipping checkpoint {newest}: ", log)
    assert "restored checkpoint at WAL seq 4" in log


# -- flash wear ----------------------------------------------------------------------------
@pytest.mark.slow
def test_bytes_written_per_sample(tmp_path: Path, forks: ForkServer) -> None:
    data, env = tmp_path / "data", daemon_env(checkpoint_every_samples="40")
    with ForkedDaemon(forks, data, env) as daemon:
        learn_in_order(daemon.url, 9, size=4)  # 36 samples: no checkpoint due yet
        stats = httpx.get(f"{daemon.url}/stats").json()
        wal_size = sum(p.stat().st_size for p in (data / "wal").glob("wal-*.log"))
        # Only the new data dir's first checkpoint (no samples, the backbone it belongs to).
        (first,) = (data / "checkpoints").glob("*.ckpt")
        assert stats["durability"]["wal_bytes"] == wal_size
        assert stats["durability"]["checkpoint_bytes"] == first.stat().st_size
        assert stats["events"]["checkpoints"] == 1
        per_sample = stats["bytes_written_per_sample"]
        assert per_sample == pytest.approx((wal_size + first.stat().st_size) / 36)
        # In the WAL: a DIM-d float32 latent plus its label, id and framing.
        assert 4 * DIM < wal_size / 36 < 4 * DIM + 200

        learn_in_order(daemon.url, 1, size=4, first=36)  # the 40th sample: a checkpoint is due
        for _ in range(500):  # it is written just after the reply
            stats = httpx.get(f"{daemon.url}/stats").json()
            if stats["events"]["checkpoints"] == 2:
                break
            threading.Event().wait(0.02)
        newest = max((data / "checkpoints").glob("*.ckpt"))
        durability = stats["durability"]
        assert durability["checkpoint_bytes"] == first.stat().st_size + newest.stat().st_size
        assert durability["last_checkpoint_bytes"] == newest.stat().st_size
        assert durability["last_checkpoint_s"] > 0
        written = durability["wal_bytes"] + durability["checkpoint_bytes"]
        assert stats["bytes_written_per_sample"] == pytest.approx(written / 40)
        assert stats["events"]["checkpoints"] == 2


# -- in process: what the loops above rarely hit ------------------------------------------
def durable_runtime(data: Path, **kwargs: Any) -> LearnerRuntime:
    wal = WriteAheadLog(data / "wal")
    return ncm_runtime(wal=wal, checkpoints=Checkpoints(data / "checkpoints"), **kwargs)


def test_retry_after_a_failed_fsync_is_stored_again_but_learned_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, failing = os.fsync, threading.Event()

    def fsync(fd: int) -> None:
        if failing.is_set() and stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    z = np.eye(4, dtype=np.float32)[:1]
    rt = ncm_runtime(wal=WriteAheadLog(tmp_path / "wal"))  # no checkpoint: replay sees all
    rt.start()
    rt.submit_learn(z, ["a"], ["k1"]).result(5.0)
    failing.set()
    with pytest.raises(StorageUnavailableError, match="learned but could not be made durable"):
        rt.submit_learn(z, ["b"], ["k2"]).result(5.0)
    failing.clear()
    # The retry is written again (to a fresh WAL segment) and acknowledged, not learned twice.
    assert rt.submit_learn(z, ["b"], ["k2"]).result(5.0).duplicates == 0
    assert rt.submit_learn(z, ["b"], ["k2"]).result(5.0).duplicates == 1
    assert rt.stats().classes["b"].samples == 1
    rt.stop()
    assert len(list((tmp_path / "wal").glob("wal-*.log"))) == 2
    again = durable_runtime(tmp_path)  # replay meets k2's record twice: it learns it once
    again.start()
    assert {c: s.samples for c, s in again.stats().classes.items()} == {"a": 1, "b": 1}
    again.stop()


def test_a_change_outside_the_wal_is_checkpointed_next(tmp_path: Path) -> None:
    rt = durable_runtime(tmp_path, durability=DurabilitySettings(checkpoint_every_samples=1000))
    rt.start()
    first = rt.stats().events["checkpoints"]  # a new data dir's, naming its backbone
    rt.submit_learn(np.eye(4, dtype=np.float32)[:2], ["a", "b"], [None, None]).result(5.0)
    assert rt.stats().events["checkpoints"] == first == 1
    rt.writer.run_locked(lambda: None)  # e.g. a retrained head: only a checkpoint keeps it
    rt.writer.maybe_checkpoint()
    assert rt.stats().events["checkpoints"] == first + 1
    rt.stop()


def test_a_wal_is_not_replayed_on_another_backbone(tmp_path: Path) -> None:
    rt = durable_runtime(tmp_path)
    rt.start()
    rt.submit_learn(np.eye(4, dtype=np.float32)[:2], ["a", "b"], [None, None]).result(5.0)
    assert rt.wal is not None
    rt.wal.close()  # a crash: the samples are in the WAL only, after the first checkpoint
    other = LearnerRuntime(
        Learner(IdentityBackbone(5), strategies.create("ncm")),
        wal=WriteAheadLog(tmp_path / "wal"),
        checkpoints=Checkpoints(tmp_path / "checkpoints"),
    )
    with pytest.raises(BackboneChangedError, match="identity backbone of dim 4"):
        other.start()
