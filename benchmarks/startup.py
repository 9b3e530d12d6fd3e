"""Start-up time: from process start to /health/ready with the int8 backbone already built,
on a fresh data dir and on a restart that restores a checkpoint; writes its BENCHMARKS.md
section.

    nice -n 5 python -m benchmarks.startup [--runs 5] [--strategies slda ncm]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_common import backbone_dir, daemon_env, machine_line, rss_mib, write_section
from benchmarks.service_load import body, images
from tests.service.daemon import Daemon

HEADING = "## Start-up time to ready"


def time_to_ready(data: Path, env: dict[str, str], teach: bool) -> tuple[float, float]:
    """Seconds from Popen to the first 200 of /health/ready, and RSS MiB then; ``teach``
    learns 64 images before the graceful stop (so the next start restores them)."""
    daemon = Daemon(data, env)  # for its port, arguments and log; started by hand
    daemon.log.parent.mkdir(parents=True, exist_ok=True)
    with open(daemon.log, "wb") as log, httpx.Client(timeout=1.0) as http:
        start = time.perf_counter()
        daemon.process = subprocess.Popen(
            daemon.args, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            while True:
                if daemon.process.poll() is not None or time.perf_counter() - start > 120:
                    raise RuntimeError(f"daemon did not start:\n{daemon.log.read_text()}")
                try:
                    if http.get(f"{daemon.url}/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
            ready = time.perf_counter() - start
            rss = rss_mib(daemon.process.pid)
            if teach:
                pngs, labels = images()
                reply = httpx.post(f"{daemon.url}/learn", content=body(pngs[:64], labels[:64],
                                   "msgpack"), headers={"content-type": "application/msgpack"},
                                   timeout=120)  # fmt: skip
                reply.raise_for_status()
        finally:
            daemon.__exit__(None, None, None)  # SIGTERM: drain and checkpoint
    return ready, rss


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    folder = backbone_dir(args.backbone_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix=".startup-", dir=Path.cwd()) as tmp:
        for strategy in args.strategies:
            env = daemon_env(folder, strategy__name=strategy)
            for case in ("fresh", "restart"):
                times, rss = [], 0.0
                for run in range(args.runs):
                    data = Path(tmp) / f"{strategy}-{case}-{run}" / "data"
                    if case == "restart":
                        time_to_ready(data, env, teach=True)
                    seconds, rss = time_to_ready(data, env, teach=False)
                    times.append(seconds)
                row = {"strategy": strategy, "case": case, "times": times, "rss": rss}
                print(row, flush=True)  # noqa: T201
                rows.append(row)
    return rows


def section(command: str, where: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        HEADING, "", f"Command: `{command}`", "", f"Machine: {where}.", "",
        "Seconds from starting `python -m service serve` (a new process, the int8 backbone "
        "already built in its folder) until `/health/ready` first answers 200, polled every "
        "10 ms. *fresh*: an empty data dir; *restart*: the data dir of a daemon that learned "
        "64 images and was stopped with SIGTERM (it loads the checkpoint and replays the "
        "WAL). The time includes Python's imports (NumPy, ONNX Runtime, FastAPI, uvicorn), "
        "opening the ONNX session and binding the port; every run starts from the OS page "
        "cache, as a restart on a device would. *RSS* is the daemon's when ready (last run).",
        "",
        "| strategy | data dir | runs | median s | min s | max s | RSS at ready MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    for r in rows:
        t = r["times"]
        lines.append(
            f"| `{r['strategy']}` | {r['case']} | {len(t)} | {statistics.median(t):.2f} "
            f"| {min(t):.2f} | {max(t):.2f} | {r['rss']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strategies", nargs="+", default=["slda", "ncm"])
    parser.add_argument("--backbone-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = "nice -n 5 " + shlex.join(["python", "-m", "benchmarks.startup", *sys.argv[1:]])
    where = machine_line()
    rows = measure(args)
    write_section(args.output, HEADING, section(command, where, rows))
    print(f"wrote {HEADING!r} in {args.output}")  # noqa: T201


if __name__ == "__main__":
    main()
