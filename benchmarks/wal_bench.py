"""Durability cost: WAL throughput with fsync "always" vs group commit, WAL bytes per
sample, and checkpoint time and size at 1k and 10k stored samples.

Run from the repository root; it rewrites its section of BENCHMARKS.md::

    OPENBLAS_NUM_THREADS=1 python benchmarks/wal_bench.py

``--dir`` chooses where the WAL and checkpoints go (default: a temporary directory on the
filesystem of the current directory), since fsync cost is a property of the device.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecl import Learner, replay, strategies
from edgecl.backbones import IdentityBackbone
from service.checkpoints import Checkpoints
from service.wal import WriteAheadLog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from benchmarks.bench_common import N_CLASSES, latents, machine, write_section  # noqa: E402

HEADING = "## Durability: WAL and checkpoints"
DIM = 1280
# (fsync policy, writer threads, records per append_many); each record is one sample.
SCENARIOS = [
    ("always", 1, 1),
    ("group", 1, 1),
    ("always", 1, 32),
    ("group", 1, 32),
    ("always", 8, 1),
    ("group", 8, 1),
]
# Extra latency added to every fsync: 0 is the device as it is; SD cards and eMMC on a
# Raspberry Pi take milliseconds per fsync, which the second value emulates.
FSYNC_DELAYS_MS = (0.0, 10.0)
CHECKPOINTS = [("ncm", 1000), ("ncm", 10000), ("slda", 1000), ("slda", 10000)]

_fsyncs = 0
_fsyncs_lock = threading.Lock()
_fsync_delay_s = 0.0
_real_fsync = os.fsync


def _counting_fsync(fd: Any) -> None:
    global _fsyncs
    with _fsyncs_lock:
        _fsyncs += 1
    _real_fsync(fd)
    time.sleep(_fsync_delay_s)


def learn_record(i: int, n: int = 1) -> dict[str, Any]:
    z = np.random.default_rng(i).random((n, DIM), dtype=np.float32)
    return {
        "kind": "learn",
        "z": z,
        "labels": [f"class-{(i + k) % N_CLASSES}" for k in range(n)],
        "ids": [f"{i:08d}-{k:04d}-sensor-frame-0000000000" for k in range(n)],  # 36 chars
        "source": "http",
    }


def throughput(
    directory: Path, fsync: str, writers: int, batch: int, seconds: float, group_ms: float
) -> dict[str, float]:
    global _fsyncs
    wal = WriteAheadLog(directory, fsync=fsync, group_ms=group_ms)  # type: ignore[arg-type]
    records = [learn_record(i) for i in range(batch)]
    latencies: list[float] = []
    done = [0] * writers
    deadline = time.perf_counter() + seconds

    def write(slot: int) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            wal.wait_durable(wal.append_many(records))
            latencies.append(time.perf_counter() - start)
            done[slot] += batch

    _fsyncs = 0
    start = time.perf_counter()
    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    fsyncs, samples = _fsyncs, sum(done)
    wal.close()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "samples_s": samples / elapsed,
        "mb_s": wal.bytes_written / elapsed / 1e6,
        "per_fsync": samples / max(fsyncs, 1),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
    }


def bytes_per_sample(directory: Path, n: int) -> float:
    wal = WriteAheadLog(directory)
    wal.append_many([learn_record(0, n)])
    wal.close()
    return wal.bytes_written / n


def checkpoint_cost(directory: Path, strategy: str, n: int) -> dict[str, float]:
    store = replay.create("class_balanced", max_bytes=256 << 20)  # holds every sample
    learner = Learner(IdentityBackbone(DIM), strategies.create(strategy), store)
    rng = np.random.default_rng(0)
    for _ in range(n // 250):
        learner.learn_latents(*latents(250, DIM, rng))
    assert len(store) == n, (len(store), n)
    ckpts = Checkpoints(directory)
    start = time.perf_counter()
    state = learner.state_dict()
    state_s = time.perf_counter() - start
    ckpts.save(state, n)
    start = time.perf_counter()
    loaded = ckpts.load_latest()
    assert loaded is not None
    Learner.from_state(loaded[0])
    load_s = time.perf_counter() - start
    return {
        "store_mib": store.nbytes / 2**20,
        "state_ms": state_s * 1000,
        "save_ms": ckpts.last_duration_s * 1000,
        "size_mib": ckpts.last_size_bytes / 2**20,
        "load_ms": load_s * 1000,
    }


def filesystem(path: Path) -> str:
    best, kind = "", "unknown filesystem"
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, fstype = line.split()[:3]
        if str(path.resolve()).startswith(mount) and len(mount) > len(best):
            best, kind = mount, f"{fstype} on {device}"
    return kind


def section(
    command: str, where: str, fs: str, args: argparse.Namespace, rates: list[Any], sizes: Any
) -> str:
    wal_rows = [
        "| added fsync ms | fsync | writer threads | records per append | samples/s | MB/s "
        "| fsyncs/s | samples per fsync | durable p50 ms | durable p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (fsync, writers, batch, delay), r in rates:
        wal_rows.append(
            f"| {delay:g} | `{fsync}` | {writers} | {batch} | {r['samples_s']:.0f} "
            f"| {r['mb_s']:.1f} | {r['samples_s'] / r['per_fsync']:.0f} "
            f"| {r['per_fsync']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        )
    ckpt_rows = [
        "| strategy | stored samples | store MiB | state_dict ms | save ms | file MiB "
        "| load + rebuild ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (strategy, n), r in sizes["checkpoints"]:
        ckpt_rows.append(
            f"| `{strategy}` | {n} | {r['store_mib']:.1f} | {r['state_ms']:.0f} "
            f"| {r['save_ms']:.0f} | {r['size_mib']:.1f} | {r['load_ms']:.0f} |"
        )
    one, many = sizes["one"], sizes["many"]
    return "\n".join(
        [
            HEADING,
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {where}. Data directory: {fs}.",
            "",
            "### Write-ahead log",
            "",
            f"Each record is one learn sample: a 1280-d float32 latent, a label and a 36-char "
            f"sample id, as the runtime writes them. Each writer thread appends, then waits "
            f"until its records are durable, for {args.seconds:g} s per row; group commit "
            f"uses `group_ms={args.group_ms:g}`. *Records per append* is the runtime's "
            f"micro-batch; *samples per fsync* shows how many acknowledgements one fsync "
            f"carries. *Added fsync ms* sleeps after every real fsync to emulate slow flash "
            f"(SD card, eMMC); 0 is this machine's disk as it is. Timings on a machine "
            f"shared with other work vary between runs (the emulated rows most).",
            "",
            "How to read it: `always` fsyncs once per `wait_durable` call and concurrent "
            "callers share one fsync, so the daemon's single writer thread (the 1-thread "
            "rows) already commits one fsync per micro-batch. `group` caps the fsync rate "
            "at one per `group_ms`: fewer fsyncs (less flash wear) for up to `group_ms` "
            "more latency per reply. Where fsync is fast it costs throughput; where fsync "
            "is slower than `group_ms` the two policies behave alike. `always` stays the "
            "default.",
            "",
            *wal_rows,
            "",
            f"WAL bytes per sample: {one:.0f} B with one sample per record, {many:.0f} B "
            f"with 32 samples in one record (the latent alone is {DIM * 4} B). Flash wear "
            "per learned sample is this plus the checkpoints (below) divided by the "
            "checkpoint interval in samples.",
            "",
            "### Checkpoints",
            "",
            "A `Learner` with `IdentityBackbone(1280)`, the strategy shown and a "
            "`class_balanced` store (int8 encoding, budget large enough to hold every "
            "sample) after learning that many structured latents in batches of 250. "
            "*save* is `Checkpoints.save`: msgpack, CRC, temporary file, fsync, rename, "
            "directory fsync; *load + rebuild* is `load_latest` plus `Learner.from_state`.",
            "",
            *ckpt_rows,
            "",
        ]
    )


def main() -> None:
    global _fsync_delay_s
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to write")
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput row")
    parser.add_argument("--group-ms", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = shlex.join(["python", "benchmarks/wal_bench.py", *sys.argv[1:]])
    where, fs = machine(), filesystem(args.dir)
    os.fsync = _counting_fsync  # counts the fsyncs each throughput row needs
    rates = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".wal-bench-") as tmp:
        for delay in FSYNC_DELAYS_MS:
            _fsync_delay_s = delay / 1000.0
            for k, (fsync, writers, batch) in enumerate(SCENARIOS):
                where_to = Path(tmp) / f"t{k}-{delay:g}"
                r = throughput(where_to, fsync, writers, batch, args.seconds, args.group_ms)
                rates.append(((fsync, writers, batch, delay), r))
                print(f"+{delay:g}ms {fsync:6s} x{writers} batch {batch:2d}: {r}", flush=True)
        _fsync_delay_s = 0.0
        sizes: dict[str, Any] = {
            "one": bytes_per_sample(Path(tmp) / "one", 1),
            "many": bytes_per_sample(Path(tmp) / "many", 32),
            "checkpoints": [],
        }
        for strategy, n in CHECKPOINTS:
            r = checkpoint_cost(Path(tmp) / f"c-{strategy}-{n}", strategy, n)
            sizes["checkpoints"].append(((strategy, n), r))
            print(f"checkpoint {strategy} {n}: {r}", flush=True)
    os.fsync = _real_fsync
    write_section(args.output, HEADING, section(command, where, fs, args, rates, sizes))
    print(f"wrote {HEADING!r} in {args.output}")


if __name__ == "__main__":
    main()
