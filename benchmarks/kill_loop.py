"""The kill -9 loop through the real daemon: clients learn while the daemon is SIGKILLed
again and again (under load, during start-up, while a checkpoint is written), then every
request not acknowledged is retried with its ids; each acknowledged sample must then be
counted exactly once. ``--big`` gives the daemon a float32 store of 8192-d latents grown
past 100 MiB first, so every checkpoint it writes and restores holds an array over 100 MiB.

Run from the repository root (niced: the machine is shared); it rewrites its section of
BENCHMARKS.md (``--append`` adds a run to it)::

    nice -n 10 python -m benchmarks.kill_loop --kills 100
    nice -n 10 python -m benchmarks.kill_loop --kills 100 --big --append

It drives the daemon through the test harness (tests/service/daemon.py forks each start
from one process that imported it once) and the clients' ledger of
tests/service/test_durability.py.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np

from benchmarks.bench_common import machine_line, write_section
from tests.service.daemon import ForkedDaemon, ForkServer, identity_env
from tests.service.test_durability import CLASSES, Ledger, cycle_settings

HEADING = "## Kill -9 loop (durability)"
MSGPACK = {"content-type": "application/msgpack"}


def body(dim: int, ids: list[str], labels: list[str]) -> bytes:
    """Packed float32 features near each label's corner, noise seeded by the sample id."""
    samples = []
    for i, y in zip(ids, labels, strict=True):
        row = np.random.default_rng(int(i.split("-")[1])).normal(0.0, 0.3, dim)
        row[CLASSES.index(y)] += 1.0
        data = row.astype("<f4").tobytes()
        samples.append(
            {"features": {"dtype": "float32", "shape": [dim], "data": data}, "label": y, "id": i}
        )
    packed: bytes = msgpack.packb({"samples": samples})
    return packed


def client(url: str, dim: int, ledger: Ledger, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=60.0) as http:
        while not stop.is_set():
            request, fresh = ledger.take()
            try:
                reply = http.post(
                    "/learn", content=body(dim, request.ids, request.labels), headers=MSGPACK
                )
            except httpx.ConnectError:
                ledger.answered(request, fresh, "refused")
                stop.wait(0.01)
                continue
            except httpx.TransportError:
                ledger.answered(request, fresh, "lost")
                continue
            outcome = str(reply.status_code)
            if outcome == "200":
                ledger.duplicates += reply.json()["duplicates"]
            ledger.answered(request, fresh, outcome)


def class_counts(url: str) -> dict[str, int]:
    stats = httpx.get(f"{url}/stats", timeout=60).json()
    return {label: c["samples"] for label, c in stats["classes"].items()}


def within(counts: dict[str, int], bounds: dict[str, tuple[int, int]]) -> bool:
    labels = set(counts) | set(bounds)
    return all(
        bounds.get(y, (0, 0))[0] <= counts.get(y, 0) <= bounds.get(y, (0, 0))[1] for y in labels
    )


def preload(server: ForkServer, data: Path, env: dict[str, str], dim: int, ledger: Ledger) -> None:
    """Grow the store past 100 MiB (3,600 samples of 32 KiB), acknowledged in the ledger."""
    with ForkedDaemon(server, data, env, ready_timeout=300) as daemon:
        with httpx.Client(base_url=daemon.url, timeout=300) as http:
            while ledger.count < 3600:
                ids = [f"s-{ledger.count + k}" for k in range(100)]
                labels = [CLASSES[k % len(CLASSES)] for k in range(100)]
                ledger.count += 100
                ledger.label.update(zip(ids, labels, strict=True))
                reply = http.post("/learn", content=body(dim, ids, labels), headers=MSGPACK)
                assert reply.status_code == 200, reply.text
                ledger.acked |= set(ids)


def run(kills: int, big: bool, root: Path, load_s: float, seed: int = 7) -> dict[str, Any]:
    dim = 8192 if big else 8
    extra = (
        {
            "store__encoding": "float32",
            "store__max_bytes": str(160 << 20),
            "max_samples_per_request": "100",
        }
        if big
        else {}
    )
    base = identity_env(dim, **extra)
    rng, ledger, data = np.random.default_rng(seed), Ledger(seed=1), root / "data"
    figures: Counter[str] = Counter()
    sizes: list[int] = []
    logs: list[str] = []
    began = time.monotonic()
    with ForkServer(base) as server:
        if big:
            preload(server, data, base, dim, ledger)
        while figures["kills"] < kills:
            env = {
                **base,
                **{f"EDGECL_{k.upper()}": v for k, v in cycle_settings(figures["kills"]).items()},
            }
            daemon = ForkedDaemon(server, data, env, ready_timeout=300).start()
            if figures["kills"] % 6 == 5:  # while starting: restoring, or not even there yet
                threading.Event().wait(float(rng.uniform(0.0, 1.5 if big else 0.4)))
                writing = any((data / "checkpoints").glob(".*.tmp"))
                daemon.kill()
                figures.update(kills=1, during_startup=1, during_checkpoint_write=writing)
                logs.append(daemon.log.read_text())
                continue
            daemon.wait_ready()
            figures["bounds_checked"] += 1
            if not within(class_counts(daemon.url), ledger.bounds()):
                figures["out_of_bounds"] += 1
            stop = threading.Event()
            threads = [
                threading.Thread(target=client, args=(daemon.url, dim, ledger, stop), daemon=True)
                for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            stop.wait(float(rng.uniform(0.05, load_s)))
            writing = any((data / "checkpoints").glob(".*.tmp"))
            daemon.kill()
            stop.set()
            for thread in threads:
                thread.join(120)
            figures.update(kills=1, under_load=1, during_checkpoint_write=writing)
            sizes += [p.stat().st_size for p in (data / "checkpoints").glob("*.ckpt")]
            logs.append(daemon.log.read_text())

        with ForkedDaemon(server, data, base, ready_timeout=300) as daemon:
            with httpx.Client(base_url=daemon.url, timeout=300.0) as http:
                while ledger.retry:
                    request = ledger.retry.popleft()
                    reply = http.post(
                        "/learn", content=body(dim, request.ids, request.labels), headers=MSGPACK
                    )
                    assert reply.status_code == 200, reply.text
                    ledger.duplicates += reply.json()["duplicates"]
                    ledger.answered(request, set(), "200")
            got = class_counts(daemon.url)
        logs.append(daemon.log.read_text())
    want = Counter(ledger.label[i] for i in ledger.acked)
    text = "\n".join(logs)
    return {
        "big": big,
        "dim": dim,
        "kills": figures["kills"],
        "under_load": figures["under_load"],
        "during_startup": figures["during_startup"],
        "during_checkpoint_write": figures["during_checkpoint_write"],
        "acknowledged": len(ledger.acked),
        "lost": sum(max(0, want[y] - got.get(y, 0)) for y in want),
        "counted_twice": sum(max(0, got.get(y, 0) - want[y]) for y in got),
        "out_of_bounds": figures["out_of_bounds"],
        "bounds_checked": figures["bounds_checked"],
        "replies": dict(ledger.replies),
        "duplicates_acknowledged": ledger.duplicates,
        "checkpoint_max_mib": max(sizes, default=0) / 2**20,
        "checkpoint_min_mib": min(sizes, default=0) / 2**20,
        "restored_from_checkpoint": len(re.findall(r"restored checkpoint at WAL seq [1-9]", text)),
        "tracebacks": text.count("Traceback"),
        "errors": len(re.findall(r" ERROR ", text)),
        "error_lines": sorted({line for line in text.splitlines() if " ERROR " in line})[:5],
        "minutes": (time.monotonic() - began) / 60,
        "load_s": load_s,
    }


def row(f: dict[str, Any]) -> str:
    low, high = f["checkpoint_min_mib"], f["checkpoint_max_mib"]
    kind = (
        f"8192-d float32 store, checkpoints {low:.0f}–{high:.0f} MiB"
        if f["big"]
        else f"8-d features, checkpoints up to {high:.1f} MiB"
    )
    kind += f", kills after 0.05–{f['load_s']:g} s under load"
    return (
        f"| {kind} | {f['kills']} | {f['under_load']} | {f['during_startup']} | "
        f"{f['during_checkpoint_write']} | {f['acknowledged']} | {f['lost']} | "
        f"{f['counted_twice']} | {f['out_of_bounds']} of {f['bounds_checked']} | "
        f"{f['replies'].get('lost', 0)} / {f['duplicates_acknowledged']} | "
        f"{f['restored_from_checkpoint']} | {f['tracebacks']} / {f['errors']} | "
        f"{f['minutes']:.1f} |"
    )


INTRO = " ".join(
    [
        "The real daemon (`edgecl serve`, identity backbone, `ncm`, a reservoir store, no probe",
        "set) is SIGKILLed again and again while two clients learn: most kills after some time",
        "under load (its row says how long at most), every sixth while it starts (restoring,",
        "cutting a torn WAL tail, or not yet there). Each restart takes the durability",
        "settings of the kill test in turn (fsync",
        "`always` or group commit, checkpoints every 25 or 60 samples or 0.2 s, small WAL",
        "segments). The clients keep a ledger: acknowledged ids, and ids sent but not",
        "acknowledged (retried with the same ids). At each restart the per-class counts must lie",
        "between what was acknowledged and what was sent (*bounds kept*); at the end every",
        "request not acknowledged is retried and the counts must equal the acknowledged samples",
        "exactly: *lost* and *counted twice* are the per-class shortfall and excess. *During a",
        "checkpoint write*: a checkpoint's temporary file existed at the kill. *Replies lost /",
        "duplicates*: requests whose reply died with the daemon, and samples their retries found",
        "learned already (acknowledged, not learned again). In the `--big` rows the store is",
        "first grown to 3,600 samples of 8192-d float32 latents (over 100 MiB, one array), so",
        "every checkpoint written, read back and restored holds an array over 100 MiB.",
    ]
)

TABLE_HEAD = "\n".join(
    [
        "| "
        + " | ".join(
            [
                "run",
                "kills",
                "under load",
                "during start-up",
                "during a checkpoint write",
                "acknowledged",
                "lost",
                "counted twice",
                "bounds kept violated",
                "replies lost / duplicates",
                "restored from a checkpoint",
                "tracebacks / ERROR lines",
                "minutes",
            ]
        )
        + " |",
        "| --- |" + " ---: |" * 12,
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--big", action="store_true", help="checkpoints over 100 MiB")
    parser.add_argument(
        "--load-s", type=float, default=0.7, help="longest time under load before a kill"
    )
    parser.add_argument("--append", action="store_true", help="add a row to the section")
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where the data dir goes")
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = "nice -n 10 " + shlex.join(["python", "-m", "benchmarks.kill_loop", *sys.argv[1:]])
    where = machine_line()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".kill-loop-") as tmp:
        figures = run(args.kills, args.big, Path(tmp), args.load_s)
    line = f"{row(figures)}\n\nCommand: `{command}` on {where}."
    old = args.output.read_text() if args.output.exists() else ""
    if args.append and HEADING in old:
        section = old.split(HEADING, 1)[1].split("\n## ", 1)[0]
        write_section(
            args.output, HEADING, f"{HEADING}{section.rstrip()}\n\n{TABLE_HEAD}\n{line}\n"
        )
    else:
        write_section(args.output, HEADING, f"{HEADING}\n\n{INTRO}\n\n{TABLE_HEAD}\n{line}\n")
    print(figures)  # noqa: T201


if __name__ == "__main__":
    main()
