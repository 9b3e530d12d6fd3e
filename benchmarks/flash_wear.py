"""Flash wear: bytes the daemon writes per learned sample (WAL and checkpoints), for a
trickle (one sample every few seconds, then SIGTERM) and a burst (100k samples, then
kill -9), with the default durability settings; and that each restart is exact.

    nice -n 5 python -m benchmarks.flash_wear [--trickle-s 600] [--burst 100000]

Daemons run the identity backbone on 1280-d float32 features (the pooled latent size),
the default store (class_balanced, int8, 16 MiB) and probe. Bytes come from the files
themselves: every WAL segment and checkpoint the data dir held, summed as they are
written (a file's size when it is replaced or at the end), so a checkpoint written at
stop is counted too. Exactness: /predict scores of fixed probe vectors before the stop
or kill and after the restart must be equal to the last bit.
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
import numpy as np

from benchmarks.bench_common import MSGPACK, daemon_env, features_body, machine, write_section
from tests.service.daemon import Daemon

HEADING = "## Flash wear: bytes written per learned sample"
DIM, CLASSES = 1280, 10
PER_REQUEST = 256  # the daemon's default max_samples_per_request


class FileMeter:
    """Sums the bytes of every file that appears under ``root`` (WAL segments and
    checkpoints), polling: a file is counted at its largest size seen."""

    def __init__(self, root: Path) -> None:
        self.root, self.sizes = root, dict[str, int]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def poll(self) -> None:
        for path in list(self.root.rglob("*")):
            if path.suffix in (".log", ".ckpt") and path.is_file():
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                # Names are unique: a segment and a checkpoint are named by their seq.
                self.sizes[path.name] = max(self.sizes.get(path.name, 0), size)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.poll()

    def __enter__(self) -> FileMeter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def total(self, kind: str) -> int:
        return sum(v for k, v in self.sizes.items() if k.endswith(kind))


def stream(rng: np.random.Generator, n: int) -> tuple[np.ndarray[Any, Any], list[str]]:
    means = np.random.default_rng(7).normal(size=(CLASSES, DIM)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    z = means[y] + rng.normal(scale=2.0, size=(n, DIM)).astype(np.float32)
    return z.astype(np.float32), [f"c{k}" for k in y]


def scores(url: str) -> list[Any]:
    probes = np.random.default_rng(99).normal(size=(8, DIM)).astype(np.float32)
    body = {"samples": [{"features": p.tolist()} for p in probes], "top_k": CLASSES}
    reply = httpx.post(f"{url}/predict", json=body, timeout=60)
    reply.raise_for_status()
    return [[(s["label"], s["score"]) for s in p["top_k"]] for p in reply.json()["predictions"]]


def learn(http: httpx.Client, z: np.ndarray[Any, Any], labels: list[str], first: int) -> None:
    ids = [f"s{first + i}" for i in range(len(labels))]
    reply = http.post(
        "/learn", content=features_body(z, labels, ids), headers={"content-type": MSGPACK}
    )
    reply.raise_for_status()


def run(strategy: str, mode: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    data = root / f"{strategy}-{mode}" / "data"
    env = daemon_env(None, strategy__name=strategy)
    rng = np.random.default_rng(0)
    start = time.monotonic()
    with FileMeter(data) as meter:
        with Daemon(data, env) as daemon, httpx.Client(base_url=daemon.url, timeout=120) as http:
            if mode == "trickle":
                n = int(args.trickle_s / args.every_s)
                z, labels = stream(rng, n)
                for i in range(n):
                    learn(http, z[i : i + 1], labels[i : i + 1], i)
                    time.sleep(args.every_s)
            else:
                n = args.burst
                for first in range(0, n, PER_REQUEST):
                    z, labels = stream(rng, min(PER_REQUEST, n - first))
                    learn(http, z, labels, first)
            stats = http.get("/stats").json()
            before = scores(daemon.url)
            if mode == "trickle":
                daemon.process.terminate()
            else:
                daemon.process.kill()
            code = daemon.process.wait(60)
        meter.poll()
    elapsed = time.monotonic() - start
    with Daemon(data, env) as daemon:
        after = scores(daemon.url)
        replayed = http_stats(daemon.url)["events"].get("replayed", 0)
    wal, ckpt = meter.total(".log"), meter.total(".ckpt")
    return {
        "strategy": strategy,
        "mode": mode,
        "samples": n,
        "exit": code,
        "wal": wal,
        "ckpt": ckpt,
        "per_sample": (wal + ckpt) / n,
        "stats_per_sample": stats.get("bytes_written_per_sample"),
        "checkpoints": stats["events"]["checkpoints"],
        "replayed": replayed,
        "exact": after == before,
        "max_diff": max(
            (
                abs(a[1] - b[1])
                for x, y in zip(before, after, strict=True)
                for a, b in zip(x, y, strict=True)
            ),
            default=0.0,
        ),
        "same_labels": [[a[0] for a in x] for x in before] == [[a[0] for a in x] for x in after],
        "seconds": elapsed,
    }


def http_stats(url: str) -> dict[str, Any]:
    out: dict[str, Any] = httpx.get(f"{url}/stats", timeout=30).json()
    return out


def section(rows: list[dict[str, Any]], args: argparse.Namespace, started: str) -> str:
    command = "nice -n 5 python -m benchmarks.flash_wear " + shlex.join(sys.argv[1:])
    lines = [
        HEADING,
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {started}",
        "",
        f"Default durability settings (checkpoint once the WAL since the last checkpoint holds "
        f"as many bytes as that checkpoint, at least 16 MiB; no checkpoint at a stop unless "
        f"due; WAL fsync `always`), identity backbone on {DIM}-d float32 features of "
        f"{CLASSES} classes, default store and probe. *Trickle*: one sample every "
        f"{args.every_s:g} s for {args.trickle_s:g} s, then SIGTERM. *Burst*: {args.burst} "
        f"samples in requests of {PER_REQUEST}, then kill -9. *WAL* and *checkpoints*: bytes "
        "of every file the data dir held (polled, a file counted at its largest), stop included. "
        "*Samples*: acknowledged (the probe holds a share back from learning). "
        "*Exact*: /predict scores of 8 fixed vectors after the restart equal those before "
        "the stop, to the last bit; *replayed*: samples the restart learned again from the WAL.",
        "",
        "| strategy | stream | samples | WAL MiB | checkpoints MiB | bytes/sample | "
        "/stats bytes/sample | checkpoints | replayed | exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        stats = r["stats_per_sample"]
        lines.append(
            f"| `{r['strategy']}` | {r['mode']} | {r['samples']} | {r['wal'] / 2**20:.2f} | "
            f"{r['ckpt'] / 2**20:.2f} | {r['per_sample']:,.0f} | "
            f"{'–' if stats is None else f'{stats:,.0f}'} | {r['checkpoints']} | "
            f"{r['replayed']} | {'yes' if r['exact'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", nargs="+", default=["slda", "ncm"])
    parser.add_argument("--trickle-s", type=float, default=600.0)
    parser.add_argument("--every-s", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    started = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecl-flash-") as tmp:
        jobs = [(s, m) for m in ("trickle", "burst") for s in args.strategies]
        results: dict[tuple[str, str], dict[str, Any]] = {}

        def one(strategy: str, mode: str) -> None:
            results[strategy, mode] = run(strategy, mode, args, Path(tmp))

        # The trickles mostly sleep: run them side by side, then the bursts one at a time.
        trickles = [threading.Thread(target=one, args=j) for j in jobs if j[1] == "trickle"]
        for t in trickles:
            t.start()
        for t in trickles:
            t.join()
        for strategy, mode in jobs:
            if mode == "burst":
                one(strategy, mode)
        rows = [results[j] for j in jobs if j in results]
    for r in rows:
        print(r, flush=True)
    write_section(args.out, HEADING, section(rows, args, started))


if __name__ == "__main__":
    main()
