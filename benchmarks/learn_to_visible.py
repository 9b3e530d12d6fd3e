"""Learn-to-visible latency: from the reply of a /learn that teaches a new class to the reply
of the first /predict that answers it, p50/p99 over many trials under a background learn
load, per strategy; writes its BENCHMARKS.md section.

    nice -n 5 python -m benchmarks.learn_to_visible [--trials 200] [--load 320]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np

from benchmarks.bench_common import MSGPACK, daemon_env, features_body, latents, machine_line, pct
from benchmarks.bench_common import write_section as write
from benchmarks.wal_bench import DIM
from tests.service.daemon import Daemon

HEADING = "## Learn-to-visible latency"
TEACH = 16  # samples of the new class in the teaching request
TIMEOUT_S = 2.0  # a trial whose class is not visible by then counts as not visible


def new_class(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A fresh prototype (ReLU of a random vector, scaled like the load's classes) and
    ``TEACH`` noisy samples around it."""
    proto = np.maximum(rng.normal(size=DIM) * 2.0, 0.0).astype(np.float32)
    noisy = np.maximum(proto + 0.3 * rng.normal(size=(TEACH, DIM)), 0.0).astype(np.float32)
    return proto, noisy


def background(url: str, rate: float, stop: threading.Event, counter: list[int]) -> None:
    """Learns 32-sample batches of ten known classes, paced to ``rate`` samples/s."""
    rng = np.random.default_rng(7)
    bodies = [features_body(*latents(32, DIM, rng), None) for _ in range(16)]
    with httpx.Client(base_url=url, timeout=60) as http:
        k, start = 0, time.perf_counter()
        while not stop.is_set():
            reply = http.post("/learn", content=bodies[k % 16], headers={"content-type": MSGPACK})
            if reply.status_code == 200:
                counter[0] += 32
            k += 1
            stop.wait(max(0.0, start + counter[0] / rate - time.perf_counter()))


def trials(url: str, strategy: str, n: int, seed: int) -> tuple[list[float], int, int, list[float]]:
    """Latencies (ms) of visible trials, count not visible, /predict calls, and the round
    trips (ms) of the teaching /learn requests."""
    rng = np.random.default_rng(seed)
    got: list[float] = []
    teaching: list[float] = []
    missed, polls = 0, 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(n):
            label = f"new-{strategy}-{i}"
            proto, noisy = new_class(rng)
            teach = features_body(noisy, [label] * TEACH, None)
            query: bytes = msgpack.packb(
                {"samples": [{"features": {"dtype": "float32", "shape": [DIM],
                                           "data": proto.tobytes()}}], "top_k": 1}
            )  # fmt: skip
            sent = time.perf_counter()
            reply = http.post("/learn", content=teach, headers={"content-type": MSGPACK})
            reply.raise_for_status()
            taught = time.perf_counter()
            teaching.append((taught - sent) * 1000)
            while True:
                answer = http.post("/predict", content=query, headers={"content-type": MSGPACK})
                polls += 1
                now = time.perf_counter()
                if answer.json()["predictions"][0]["label"] == label:
                    got.append((now - taught) * 1000)
                    break
                if now - taught > TIMEOUT_S:
                    missed += 1
                    break
    return got, missed, polls, teaching


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix=".visible-", dir=Path.cwd()) as tmp:
        for strategy in args.strategies:
            env = daemon_env(None, strategy__name=strategy)
            with Daemon(Path(tmp) / strategy / "data", env) as daemon:
                rng = np.random.default_rng(3)
                with httpx.Client(base_url=daemon.url, timeout=60) as http:
                    for _ in range(8):  # the known classes exist before the first trial
                        content = features_body(*latents(32, DIM, rng), None)
                        http.post("/learn", content=content, headers={"content-type": MSGPACK})
                stop, counter = threading.Event(), [0]
                load = threading.Thread(
                    target=background, args=(daemon.url, args.load, stop, counter)
                )
                load.start()
                start = time.perf_counter()
                try:
                    lat, missed, polls, teach = trials(daemon.url, strategy, args.trials, 11)
                finally:
                    stop.set()
                    load.join()
                achieved = counter[0] / (time.perf_counter() - start)
            row = {"strategy": strategy, "visible": len(lat), "missed": missed,
                   "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                   "max": max(lat) if lat else float("nan"),
                   "polls": polls / args.trials, "load": achieved,
                   "teach_p50": pct(teach, 0.5), "teach_p99": pct(teach, 0.99)}  # fmt: skip
            print(row, flush=True)  # noqa: T201
            rows.append(row)
    return rows


def section(command: str, where: str, args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    lines = [
        HEADING, "", f"Command: `{command}`", "", f"Machine: {where}.", "",
        "One fresh daemon per strategy (`python -m service serve`, identity backbone on "
        "1280-d float32 `features`, so the time is the service's and the strategy's, not the "
        "backbone's; default store, probe and WAL fsync `always`). A background client "
        f"learns 32-sample batches of ten known classes, paced to {args.load:.0f} samples/s "
        "(*achieved load* below). Each trial posts one msgpack /learn of "
        f"{TEACH} noisy samples of a brand-new class, then, from the moment its reply "
        "arrives, posts /predict (`top_k` 1) with the class prototype back to back until the "
        "top label is the new class; the latency is from the /learn reply to that /predict "
        f"reply, so it includes at least one /predict round trip. A trial not visible after "
        f"{TIMEOUT_S:.0f} s counts as *not visible*. The number of classes grows by one per "
        "trial. *Teach /learn* is the round trip of the teaching /learn itself (the "
        "daemon replies once the samples are learned and durable; `slda` computes its new "
        "weights before that reply when the previous ones were used by a prediction, as "
        "test-then-train always does).",
        "",
        "| strategy | trials | not visible | p50 ms | p99 ms | max ms | /predict calls per trial "
        "| achieved load samples/s | teach /learn p50 ms | teach /learn p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    for r in rows:
        lines.append(
            f"| `{r['strategy']}` | {r['visible'] + r['missed']} | {r['missed']} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['polls']:.2f} "
            f"| {r['load']:.0f} | {r['teach_p50']:.1f} | {r['teach_p99']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--load", type=float, default=320.0, help="background samples/s")
    parser.add_argument("--strategies", nargs="+", default=["slda", "ncm", "cwr_star"])
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = "nice -n 5 " + shlex.join(
        ["python", "-m", "benchmarks.learn_to_visible", *sys.argv[1:]]
    )
    where = machine_line()
    rows = measure(args)
    write(args.output, HEADING, section(command, where, args, rows))
    print(f"wrote {HEADING!r} in {args.output}")  # noqa: T201


if __name__ == "__main__":
    main()
