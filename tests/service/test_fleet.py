"""A fleet on loopback: a real Flower server (`edgecl fleet server`) and three real
`edgecl serve` daemons, each taught different classes over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgecl import strategies
from edgecl.backbones import IdentityBackbone
from edgecl.learner import Learner
from tests.net import free_port
from tests.service.cdp import Browser
from tests.service.daemon import Daemon, identity_env

pytest.importorskip("flwr")

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

DIM = 8
BASE = 40  # samples the shared covariance is fixed after (slda's fixed-covariance variant)
TAUGHT = {0: ["cat", "dog"], 1: ["bird", "fish"], 2: ["fox", "owl"]}


class Server:
    """`edgecl fleet server` with its rounds read from its JSON lines."""

    def __init__(self, tmp: Path, devices: int, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.out = tmp / f"fleet-server-{self.port}-{len(extra)}.out"
        self.args = [
            sys.executable, "-m", "service", "fleet", "server",
            "--address", f"127.0.0.1:{self.port}", "--min-devices", str(devices),
            "--round-interval", "0.3", "--round-timeout", "20", *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes]

    def __enter__(self) -> Server:
        with open(self.out, "wb") as out, open(self.out.with_suffix(".log"), "wb") as err:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=err)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait(10)

    def rounds(self) -> list[dict[str, Any]]:
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def round_started(self, devices: int) -> int:
        """Wait until a round asks ``devices`` devices to send (Flower's log); its number."""
        log, asked = self.out.with_suffix(".log"), f"sampled {devices} clients"
        before = log.read_text().count(asked)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_text()
            if text.count(asked) > before:
                return text.count("[ROUND ")
            time.sleep(0.002)
        raise AssertionError("no round began")

    def wait(self, done: Callable[[dict[str, Any]], bool], after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for report in self.rounds():
                if report["round"] > after and done(report):
                    return report
            assert self.process.poll() is None, self.out.with_suffix(".log").read_text()
            time.sleep(0.1)
        raise AssertionError(f"no such round: {self.rounds()[-3:]}")


def env(server: Server, device: str, strategy: str, **options: Any) -> dict[str, str]:
    return identity_env(
        DIM,
        strategy__name=strategy,
        strategy__options=json.dumps(options),
        store__kind="paper",
        fleet_enabled="true",
        fleet_server=f"127.0.0.1:{server.port}",
        fleet_device_id=device,
        fleet_reconnect_s="0.3",
    )


def samples(label: str, n: int, seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng([seed, sum(map(ord, label))])
    centre = np.random.default_rng(sum(map(ord, label))).normal(0, 2, DIM)
    return (centre + rng.normal(0, 1, (n, DIM))).astype(np.float32)


def teach(url: str, z: np.ndarray[Any, Any], labels: list[str], prefix: str) -> None:
    body = {
        "samples": [
            {"features": [float(v) for v in row], "label": y, "id": f"{prefix}-{i}"}
            for i, (row, y) in enumerate(zip(z, labels, strict=True))
        ]
    }
    reply = httpx.post(f"{url}/learn", json=body, timeout=30)
    assert reply.status_code == 200, reply.text


def scores(url: str, z: np.ndarray[Any, Any]) -> list[dict[str, float]]:
    body = {"samples": [{"features": [float(v) for v in row]} for row in z], "top_k": 100}
    reply = httpx.post(f"{url}/predict", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return [{k["label"]: k["score"] for k in p["top_k"]} for p in reply.json()["predictions"]]


@contextmanager
def fleet(
    tmp: Path, strategy: str, *extra: str, **options: Any
) -> Iterator[tuple[Server, list[Daemon]]]:
    with ExitStack() as stack:
        server = stack.enter_context(Server(tmp, len(TAUGHT), *extra))
        daemons = [
            stack.enter_context(
                Daemon(tmp / f"dev{i}" / "data", env(server, f"dev{i}", strategy, **options))
            )
            for i in TAUGHT
        ]
        yield server, daemons


def all_applied(classes: int) -> Callable[[dict[str, Any]], bool]:
    def done(report: dict[str, Any]) -> bool:
        return len(report["classes"]) == classes and len(report["applied"]) == len(TAUGHT)

    return done


def test_slda_fleet_equals_one_learner_on_the_union(tmp_path: Path) -> None:
    """Every daemon answers every class after one round, with the probabilities of one
    learner taught all the samples (covariance fixed after a shared base)."""
    union = Learner(IdentityBackbone(DIM), strategies.create("slda", covariance_samples=BASE))
    with fleet(tmp_path, "slda", covariance_samples=BASE) as (server, daemons):
        base_z = np.concatenate([samples("base0", BASE // 2, 0), samples("base1", BASE // 2, 0)])
        base_y = ["base0"] * (BASE // 2) + ["base1"] * (BASE // 2)
        teach(daemons[0].url, base_z, base_y, "base")
        union.learn_latents(base_z, base_y)
        first = server.wait(all_applied(2))
        for i, daemon in enumerate(daemons):
            for label in TAUGHT[i]:
                z = samples(label, 15 + 5 * i, 1)
                teach(daemon.url, z, [label] * len(z), f"{label}")
                union.learn_latents(z, [label] * len(z))
        report = server.wait(all_applied(8), after=first["round"])
        assert sorted(report["devices"]) == ["dev0", "dev1", "dev2"]
        probe = np.random.default_rng(9).normal(0, 2, (30, DIM)).astype(np.float32)
        expected = union.predict_open(probe).proba
        labels = union.labels.labels
        for i, daemon in enumerate(daemons):
            got = scores(daemon.url, probe)
            gap = max(
                abs(row[str(label)] - float(expected[r, j]))
                for r, row in enumerate(got)
                for j, label in enumerate(labels)
            )
            assert gap <= 1e-6
            fleet_stats = httpx.get(f"{daemon.url}/stats", timeout=10).json()["fleet"]
            own = set(TAUGHT[i]) | ({"base0", "base1"} if i == 0 else set())
            assert set(fleet_stats["from_elsewhere"]) == set(labels) - own
        # Rounds that change nothing send no arrays, and swap or checkpoint nothing.
        versions = [
            httpx.get(f"{d.url}/stats", timeout=10).json()["model_version"] for d in daemons
        ]
        idle = server.wait(lambda r: len(r["applied"]) == 3, after=report["round"] + 1)
        assert max(idle["bytes_sent"].values()) < 1000
        assert set(idle["bytes_back"].values()) == {0}  # each device has this merge already
        again = [httpx.get(f"{d.url}/stats", timeout=10).json()["model_version"] for d in daemons]
        assert again == versions
        if CHROMIUM is not None:  # the dashboard's headline says so too
            with Browser(CHROMIUM, tmp_path / "profile") as browser:
                browser.open(f"{daemons[1].url}/dashboard", 1280, 800)
                shown = browser.wait_for(
                    "document.getElementById('fleet') && document.getElementById('fleet')"
                    ".textContent"
                )
                assert shown.endswith("6 classes from elsewhere")


def test_a_daemon_killed_mid_round_rejoins_and_nothing_is_lost(tmp_path: Path) -> None:
    """kill -9 of a daemon while rounds run: the others' rounds complete; it restarts from
    its data dir with everything it acknowledged, rejoins, and the fleet's model is still
    exactly the union's (ncm: a class two devices share would drift if counted twice)."""
    union = Learner(IdentityBackbone(DIM), strategies.create("ncm"))
    with fleet(tmp_path, "ncm") as (server, daemons):
        taught = {**TAUGHT, 2: [*TAUGHT[2], "cat"]}  # "cat" on two devices
        for i, daemon in enumerate(daemons):
            for label in taught[i]:
                z = samples(label, 10 + 3 * i, i)
                teach(daemon.url, z, [label] * len(z), f"{label}-{i}")
                union.learn_latents(z, [label] * len(z))
        server.wait(all_applied(6))
        late = samples("late", 12, 5)
        teach(daemons[2].url, late, ["late"] * len(late), "late")
        union.learn_latents(late, ["late"] * len(late))
        in_round = server.round_started(devices=3)  # within the round that just began
        daemons[2].process.kill()
        daemons[2].process.wait(10)
        killed = server.wait(lambda r: r["round"] == in_round)
        assert {"dev0", "dev1"} <= set(killed["applied"])  # the others' round completes
        down = server.wait(lambda r: "dev2" not in r["devices"], after=in_round - 1)
        again = Daemon(tmp_path / "dev2" / "data", daemons[2].env)
        with again:
            counts = httpx.get(f"{again.url}/stats", timeout=10).json()["classes"]
            assert counts["late"]["samples"] == len(late)
            assert counts["cat"]["samples"] == 10 + 3 * 2
            server.wait(all_applied(7), after=down["round"])
            probe = np.random.default_rng(3).normal(0, 2, (30, DIM)).astype(np.float32)
            expected = union.predict_open(probe).proba
            labels = [str(label) for label in union.labels.labels]
            for url in (daemons[0].url, daemons[1].url, again.url):
                got = scores(url, probe)
                gap = max(
                    abs(row[label] - float(expected[r, j]))
                    for r, row in enumerate(got)
                    for j, label in enumerate(labels)
                )
                assert gap <= 1e-6


def test_a_head_the_fleet_cannot_merge_is_refused_at_start(tmp_path: Path) -> None:
    settings = {"strategy__name": "gdumb", "fleet_enabled": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--data-dir", str(tmp_path / "data"),
         "--port", str(free_port())],
        env=identity_env(DIM, **settings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "fleet_enabled: strategy 'gdumb' has no per-class weights" in done.stderr


def test_a_restarted_server_with_its_state_still_merges_an_absent_device(tmp_path: Path) -> None:
    state = str(tmp_path / "fleet.state")
    with fleet(tmp_path, "ncm", "--state", state) as (server, daemons):
        for i, daemon in enumerate(daemons):
            for label in TAUGHT[i]:
                z = samples(label, 10, i)
                teach(daemon.url, z, [label] * len(z), label)
        server.wait(all_applied(6))
        daemons[2].process.kill()  # away while the server restarts
        daemons[2].process.wait(10)
        server.__exit__()
        extra = ("--state", state, "--min-devices", "2")
        with Server(tmp_path, 2, *extra, port=server.port) as again:
            teach(daemons[0].url, samples("cat", 4, 7), ["cat"] * 4, "more-cat")
            again.wait(lambda r: sorted(r["applied"]) == ["dev0", "dev1"])
            for daemon in daemons[:2]:
                got = scores(daemon.url, samples("fox", 1, 0))[0]
                assert got["fox"] > 0.5  # dev2's class, kept by the server while it is away
