"""Memory soak: daemon RSS and store bytes after 10k, 100k and 1M learned 1280-d `features`
samples, for slda and ncm, and whether torch got imported; writes its BENCHMARKS.md section.

    nice -n 5 python -m benchmarks.memory_soak [--budget-s 270] [--strategies slda ncm]

Each strategy gets a fresh daemon (identity backbone on 1280-d features, the default 16 MiB
class-balanced int8 store, WAL fsync ``group``) fed big msgpack batches by two client
threads; a strategy that does not reach 1M samples within ``--budget-s`` stops there and the
table says how far it got.
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

from benchmarks.bench_common import (
    MSGPACK,
    daemon_env,
    features_body,
    machine_line,
    rss_mib,
    torch_loaded,
    write_section,
)
from benchmarks.wal_bench import latents
from tests.service.daemon import Daemon

HEADING = "## Memory soak (RSS and store bytes over 1M samples)"
MARKS = (10_000, 100_000, 300_000, 1_000_000)
BATCH = 1024


def soak(data: Path, strategy: str, budget_s: float) -> list[dict[str, Any]]:
    env = daemon_env(
        None,
        strategy__name=strategy,
        wal_fsync="group",
        max_batch=str(BATCH),
        max_samples_per_request=str(BATCH),
        max_body_bytes=str(16 << 20),
        checkpoint_every_samples="100000",
    )
    rng = np.random.default_rng(0)
    # No ids: ids would make every body unique; without them re-sent bodies are learned again.
    bodies = [features_body(*latents(BATCH, rng), None) for _ in range(8)]
    rows: list[dict[str, Any]] = []
    with Daemon(data, env) as daemon, httpx.Client(base_url=daemon.url, timeout=120) as http:
        pid = daemon.process.pid
        rows.append(row(http, pid, 0.0, strategy))
        stop = threading.Event()
        errors: list[str] = []

        def client(k: int) -> None:
            with httpx.Client(base_url=daemon.url, timeout=120) as mine:
                while not stop.is_set():
                    reply = mine.post(
                        "/learn", content=bodies[k % 8], headers={"content-type": MSGPACK}
                    )
                    if reply.status_code not in (200, 429, 503):
                        errors.append(reply.text)
                        return
                    k += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
        start = time.monotonic()
        for t in threads:
            t.start()
        try:
            for mark in MARKS:
                while not errors and time.monotonic() - start < budget_s:
                    if learned(http) >= mark:
                        rows.append(row(http, pid, time.monotonic() - start, strategy))
                        print(rows[-1], flush=True)  # noqa: T201
                        break
                    time.sleep(0.2)
                else:
                    break
        finally:
            stop.set()
            for t in threads:
                t.join()
        if errors:
            raise RuntimeError(errors[0])
        if rows[-1]["learned"] < MARKS[-1]:  # out of time: the last point reached
            rows.append(row(http, pid, time.monotonic() - start, strategy))
            rows[-1]["partial"] = True
    return rows


def learned(http: httpx.Client) -> int:
    return int(http.get("/stats").json()["samples_learned"])


def row(http: httpx.Client, pid: int, elapsed: float, strategy: str) -> dict[str, Any]:
    stats = http.get("/stats").json()
    return {
        "strategy": strategy,
        "learned": int(stats["samples_learned"]),
        "elapsed": elapsed,
        "rss": rss_mib(pid),
        "store_items": int(stats["store"]["items"]),
        "store_mib": stats["store"]["bytes"] / 2**20,
        "torch": torch_loaded(pid),
    }


def section(command: str, where: str, rows: list[dict[str, Any]], budget_s: float) -> str:
    lines = [
        HEADING,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {where}.",
        "",
        "One fresh daemon per strategy (`python -m service serve`, identity backbone on "
        "1280-d float32 `features`, the default `class_balanced` int8 store of 16 MiB, the "
        "default probe, WAL fsync `group`, micro-batches up to 1024 samples, checkpoints every "
        "100k samples or 60 s). Two client threads post msgpack bodies of 1024 samples "
        "(ten structured classes) back to back. *RSS* is the daemon process's resident set "
        "(psutil) when `/stats` first reports at least that many samples learned; *store* is "
        "`/stats` `store.bytes` and `store.items`; *torch* says whether libtorch is mapped "
        "into the daemon (`/proc/PID/maps`). Row 0 is the daemon just after start-up. "
        f"Each strategy had a time budget of {budget_s:.0f} s; a row marked *(stopped)* is "
        "where it was when the budget ran out.",
        "",
        "| strategy | samples learned | elapsed s | samples/s | RSS MiB | store items "
        "| store MiB | torch imported |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        rate = f"{r['learned'] / r['elapsed']:.0f}" if r["elapsed"] else ""
        mark = " (stopped)" if r.get("partial") else ""
        lines.append(
            f"| `{r['strategy']}` | {r['learned']}{mark} | {r['elapsed']:.0f} | {rate} "
            f"| {r['rss']:.0f} | {r['store_items']} | {r['store_mib']:.1f} "
            f"| {'yes' if r['torch'] else 'no'} |"
        )
    lines += ["", growth(rows)]
    return "\n".join(lines) + "\n"


def growth(rows: list[dict[str, Any]]) -> str:
    """RSS growth from the 100k row to the last row, per strategy."""
    parts = []
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == strategy]
        base = next((r for r in mine if r["learned"] >= 100_000 and not r.get("partial")), None)
        last = mine[-1]
        if base is None or last is base:
            parts.append(f"`{strategy}`: did not get past 100k samples")
            continue
        change = 100 * (last["rss"] / base["rss"] - 1)
        parts.append(
            f"`{strategy}`: RSS {base['rss']:.0f} MiB at {base['learned']} samples, "
            f"{last['rss']:.0f} MiB at {last['learned']} ({change:+.1f}%), "
            f"peak {max(r['rss'] for r in mine):.0f} MiB"
        )
    return "RSS growth from 100k samples to the last row: " + "; ".join(parts) + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=270.0, help="seconds per strategy")
    parser.add_argument("--strategies", nargs="+", default=["slda", "ncm"])
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where the data dir goes")
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = "nice -n 5 " + shlex.join(["python", "-m", "benchmarks.memory_soak", *sys.argv[1:]])
    where = machine_line()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".memory-soak-") as tmp:
        for strategy in args.strategies:
            rows += soak(Path(tmp) / strategy / "data", strategy, args.budget_s)
    write_section(args.output, HEADING, section(command, where, rows, args.budget_s))
    print(f"wrote {HEADING!r} in {args.output}")  # noqa: T201


if __name__ == "__main__":
    main()
