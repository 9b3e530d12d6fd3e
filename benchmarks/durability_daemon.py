"""Durability through the daemon: learn throughput over HTTP with fsync "always" vs group
commit, WAL bytes per sample, and checkpoint time and size at 1k and 10k stored samples as
the daemon reports them in /stats.

Run from the repository root (niced: the machine is shared); it rewrites its section of
BENCHMARKS.md::

    nice -n 10 env OPENBLAS_NUM_THREADS=1 python -m benchmarks.durability_daemon

``--dir`` chooses where the data dir goes (default: a temporary directory on the filesystem
of the current directory), since fsync cost is a property of the device.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np

from benchmarks.bench_common import latents, machine, write_section
from benchmarks.wal_bench import DIM, filesystem

HEADING = "## Durability through the daemon"
MSGPACK = "application/msgpack"
# (fsync policy, samples per request, concurrent clients)
SCENARIOS = [(f, b, c) for f in ("always", "group") for b in (1, 32) for c in (1, 4)]
CHECKPOINT_AT = (1000, 5000, 10000)


class Daemon:
    """`python -m service serve` on a free port with the identity backbone on DIM-d latents."""

    def __init__(self, data: Path, **settings: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECL_")}
        env.update(
            OPENBLAS_NUM_THREADS="1",
            EDGECL_BACKBONE="identity",
            EDGECL_LATENT_DIM=str(DIM),
            EDGECL_STORE__KIND="class_balanced",
            EDGECL_STORE__MAX_BYTES=str(32 << 20),  # holds every sample below
            EDGECL_PROBE_SHARE="0",
            EDGECL_LOG_LEVEL="warning",
        )
        env.update({f"EDGECL_{k.upper()}": v for k, v in settings.items()})
        args = ["serve", "--port", str(self.port), "--data-dir", str(data)]
        self.process = subprocess.Popen([sys.executable, "-m", "service", *args], env=env)
        start = time.monotonic()
        while time.monotonic() < start + 120:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    self.ready_s = time.monotonic() - start
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.process.kill()
        raise RuntimeError("the daemon did not start")

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.url}/stats", timeout=30).json()
        return stats

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.stop()


def body(z: np.ndarray, labels: list[str], first_id: int) -> bytes:
    samples = [
        {
            "features": {"dtype": "float32", "shape": [DIM], "data": row.tobytes()},
            "label": label,
            "id": f"bench-{first_id + i}",
        }
        for i, (row, label) in enumerate(zip(z, labels, strict=True))
    ]
    packed: bytes = msgpack.packb({"samples": samples})
    return packed


def throughput(data: Path, fsync: str, batch: int, clients: int, seconds: float) -> dict[str, Any]:
    with Daemon(data, wal_fsync=fsync, strategy__name="ncm", checkpoint_every_s="100000",
                checkpoint_every_samples="100000000") as daemon:  # fmt: skip
        return _throughput(daemon, batch, clients, seconds)


def _throughput(daemon: Daemon, batch: int, clients: int, seconds: float) -> dict[str, Any]:
    # Bodies are built before timing, so the clients spend their time waiting on the daemon;
    # a client that runs out of them ends the row early (elapsed is measured to the end).
    rng = np.random.default_rng(0)
    per_client = 3000 // batch + 1
    bodies = [
        [body(*latents(batch, DIM, rng), (c * per_client + k) * batch) for k in range(per_client)]
        for c in range(clients)
    ]
    latencies: list[float] = []
    lock, stop = threading.Lock(), threading.Event()

    def client(mine: list[bytes]) -> None:
        with httpx.Client(base_url=daemon.url, timeout=60) as http:
            for content in mine:
                if stop.is_set():
                    return
                start = time.perf_counter()
                reply = http.post("/learn", content=content, headers={"content-type": MSGPACK})
                assert reply.status_code == 200, reply.text
                with lock:
                    latencies.append(time.perf_counter() - start)

    before = daemon.stats()["samples_learned"]
    threads = [threading.Thread(target=client, args=(bodies[c],)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, start + seconds - time.perf_counter()))
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    stats = daemon.stats()
    learned = stats["samples_learned"] - before
    ms = sorted(x * 1000 for x in latencies)
    return {
        "samples_s": learned / elapsed,
        "requests_s": len(latencies) / elapsed,
        "p50": statistics.median(ms),
        "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "wal_per_sample": stats["durability"]["wal_bytes"] / learned,
    }


def checkpoints(data: Path, strategy: str) -> list[dict[str, Any]]:
    rng, rows, learned = np.random.default_rng(1), [], 0
    with (
        Daemon(data, strategy__name=strategy, checkpoint_every_samples="1000",
               checkpoint_every_s="100000") as daemon,
        httpx.Client(base_url=daemon.url, timeout=120) as http,
    ):  # fmt: skip
        while learned < CHECKPOINT_AT[-1]:
            content = body(*latents(50, DIM, rng), learned)
            reply = http.post("/learn", content=content, headers={"content-type": MSGPACK})
            assert reply.status_code == 200, reply.text
            learned += 50
            if learned in CHECKPOINT_AT:
                while (stats := daemon.stats())["events"]["checkpoints"] < learned // 1000:
                    time.sleep(0.05)  # the checkpoint is written just after the reply
                rows.append(
                    {
                        "strategy": strategy,
                        "stored": stats["store"]["items"],
                        "store_mib": stats["store"]["bytes"] / 2**20,
                        "ms": stats["durability"]["last_checkpoint_s"] * 1000,
                        "mib": stats["durability"]["last_checkpoint_bytes"] / 2**20,
                        "per_sample": stats["bytes_written_per_sample"],
                    }
                )
    with Daemon(data, strategy__name=strategy) as restart:  # restores the 10k checkpoint
        rows[-1]["restart_s"] = restart.ready_s
    return rows


def section(command: str, where: str, fs: str, rates: list[Any], ckpts: list[Any]) -> str:
    lines = [
        HEADING,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {where}. Data directory: {fs}.",
        "",
        f"The real daemon (`python -m service serve`, a subprocess) on the identity backbone "
        f"with {DIM}-d float32 latents (the size of EfficientNet-Lite0's pooled features), "
        "`ncm`, a `class_balanced` int8 store, no probe set. Clients send msgpack `/learn` "
        "bodies with packed float32 `features` and a sample id each, over keep-alive "
        "connections, from the same 2-core machine (so client and daemon share the CPUs). "
        "Each request is answered once its samples are in the WAL and fsynced; checkpoints "
        "are off in the throughput rows (measured separately below). *WAL B/sample* is "
        "`durability.wal_bytes` over the samples learned, as `/stats` reports them. Timings "
        "on a machine shared with other work vary between runs.",
        "",
        "How to read it: the writer waits up to `max_wait_ms` (5 ms, the default) for "
        "learn requests still being embedded, never for a lone one, and the HTTP round trip "
        "itself (FastAPI, decoding, "
        "the reply) costs milliseconds on this machine, so with one sample per request the "
        "per-request cost bounds throughput more than the fsync does; 32 samples per "
        "request share all of it. With several clients, one fsync covers every request in "
        "a micro-batch under either policy. The WAL's bytes per sample hardly depend on the "
        f"policy: the latent is {4 * DIM} B, the rest is the label, the id and the framing "
        "(less per sample when a request carries many).",
        "",
        "| fsync | samples per request | clients | samples/s | requests/s | reply p50 ms "
        "| reply p99 ms | WAL B/sample |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (fsync, batch, clients), r in rates:
        lines.append(
            f"| `{fsync}` | {batch} | {clients} | {r['samples_s']:.0f} | {r['requests_s']:.0f} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['wal_per_sample']:.0f} |"
        )
    lines += [
        "",
        "Checkpoints as the daemon reports them: `checkpoint_every_samples=1000`, learning "
        "requests of 50 samples; at 1k, 5k and 10k stored samples `/stats` gives "
        "`durability.last_checkpoint_s` (the writer's pause: state, msgpack, CRC, temporary "
        "file, fsync, rename, directory fsync) and `durability.last_checkpoint_bytes`. "
        "*Flash wear* is `bytes_written_per_sample` at that point: WAL plus every checkpoint "
        "written so far, per sample learned (it grows with the store, since each checkpoint "
        "rewrites it whole). *Restart* is the time from starting a new daemon process on "
        "that data dir to `/health/ready` (imports, load and rebuild, uvicorn start).",
        "",
        "| strategy | stored samples | store MiB | checkpoint ms | checkpoint MiB "
        "| flash wear B/sample | restart s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in ckpts:
        restart = f"{r['restart_s']:.1f}" if "restart_s" in r else ""
        lines.append(
            f"| `{r['strategy']}` | {r['stored']} | {r['store_mib']:.1f} | {r['ms']:.0f} "
            f"| {r['mib']:.1f} | {r['per_sample']:.0f} | {restart} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where the data dir goes")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput row")
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = "nice -n 10 env OPENBLAS_NUM_THREADS=1 " + shlex.join(
        ["python", "-m", "benchmarks.durability_daemon", *sys.argv[1:]]
    )
    where, fs = machine(), filesystem(args.dir)
    rates, ckpts = [], []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".durability-bench-") as tmp:
        for k, (fsync, batch, clients) in enumerate(SCENARIOS):
            r = throughput(Path(tmp) / f"t{k}", fsync, batch, clients, args.seconds)
            rates.append(((fsync, batch, clients), r))
            print(f"{fsync:6s} batch {batch:2d} x{clients}: {r}", flush=True)  # noqa: T201
        for strategy in ("ncm", "slda"):
            rows = checkpoints(Path(tmp) / f"c-{strategy}", strategy)
            ckpts += rows
            print(rows, flush=True)  # noqa: T201
    write_section(args.output, HEADING, section(command, where, fs, rates, ckpts))
    print(f"wrote {HEADING!r} in {args.output}")  # noqa: T201


if __name__ == "__main__":
    main()
