"""Hostile load on the real daemon: its memory and liveness while clients send image bombs
(lossless WebP of 40 MP in 1.6 KB), images just under the decode budget, and 8 MiB bodies of
empty samples, beside an honest client.

Run from the repository root (niced: the machine is shared); it rewrites its section of
BENCHMARKS.md::

    nice -n 10 python -m benchmarks.hostile_load

The daemon uses the int8 backbone (built into a cache folder if needed) and
``MALLOC_ARENA_MAX=2`` as deployed. *Peak RSS* is the kernel's high-water mark of the
daemon's resident set (``VmHWM``), reset once it is ready; *live* is the latency of
``GET /health/live`` polled every 100 ms meanwhile.
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack

from benchmarks.bench_common import (
    backbone_dir,
    daemon_env,
    machine_line,
    pct,
    proc_status_mib,
    write_section,
)
from service.settings import DEFAULT_DECODE_PIXELS
from tests.net import free_port

HEADING = "## Hostile load: memory and liveness"
BOMB_SIDE = 6300  # 39.7 MP: under the 40 MP image limit
# Just under the default decode budget (4 MP), so it is decoded whole.
BIG_SIDE = math.isqrt(DEFAULT_DECODE_PIXELS) - 10


def webp(side: int, colour: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    """A flat lossless WebP: a few KB that decode to ``side`` x ``side`` pixels."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(out, format="WEBP", lossless=True)
    return out.getvalue()


def empty_samples(size: int) -> bytes:
    """A JSON /learn body of ``size`` bytes at most: ``{"samples": [{}, {}, ...]}``."""
    return b'{"samples": [' + b"{}," * ((size - 16) // 3) + b"{}]}"


def attack(url: str, pid: int, seconds: float, only: set[str] | None = None) -> dict[str, Any]:
    """Run the hostile clients against ``url`` for ``seconds``; figures of daemon ``pid``.
    ``only``: run just these clients (by name).

    Needs a model that has learned something (so /predict decodes rather than answers 409).
    """
    bomb, big = webp(BOMB_SIDE), webp(BIG_SIDE, (200, 30, 10))
    small = webp(64, (90, 90, 90))
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start_rss = proc_status_mib(pid, "VmRSS")
    stop = threading.Event()
    replies: Counter[str] = Counter()
    lock = threading.Lock()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    def client(name: str, send: Callable[[httpx.Client, int], httpx.Response]) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            n = 0
            while not stop.is_set():
                status = str(send(http, n).status_code)
                n += 1
                with lock:
                    replies[f"{name} {status}"] += 1

    bombs = {"samples": [{"image": b64(bomb), "label": "bomb"}] * 4}
    empty = empty_samples(8 << 20)
    lists = msgpack.packb({"samples": [[]] * ((8 << 20) - 16)})  # one byte per list
    clients: dict[str, Callable[[httpx.Client, int], httpx.Response]] = {
        "bomb /learn": lambda h, n: h.post("/learn", json=bombs),
        "bomb /predict": lambda h, n: h.post("/predict", files=[("file", ("b.webp", bomb))] * 4),
        "under-budget /learn": lambda h, n: h.post(
            "/learn",
            json={"samples": [{"image": b64(big), "label": "big", "id": f"big-{n}"}] * 2},
        ),
        "8 MiB empty samples": lambda h, n: h.post(
            "/learn", content=empty, headers={"content-type": "application/json"}
        ),
        "8 MiB msgpack lists": lambda h, n: h.post(
            "/learn", content=lists, headers={"content-type": "application/msgpack"}
        ),
        "honest /learn": lambda h, n: h.post(
            "/learn", json={"samples": [{"image": b64(small), "label": "grey", "id": f"h-{n}"}]}
        ),
    }
    names = [*clients, "bomb /learn"]  # two clients send bombs to /learn
    threads = [
        threading.Thread(target=client, args=(name, clients[name]), daemon=True)
        for name in names
        if only is None or name in only
    ]
    live: list[float] = []
    rss: list[float] = []
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            assert http.get("/health/live").status_code == 200
            live.append(time.perf_counter() - began)
            rss.append(proc_status_mib(pid, "VmRSS"))
            time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(120)
    return {
        "seconds": seconds,
        "rss_at_start_mib": start_rss,
        "peak_rss_mib": proc_status_mib(pid, "VmHWM"),
        "max_sampled_rss_mib": max(rss),
        "live_polls": len(live),
        "live_p50_s": pct(live, 0.5),
        "live_max_s": max(live),
        "replies": dict(sorted(replies.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--backbone-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = "nice -n 10 " + shlex.join(["python", "-m", "benchmarks.hostile_load", *sys.argv[1:]])
    where = machine_line()
    env = daemon_env(backbone_dir(args.backbone_dir), probe_share="0")
    env["MALLOC_ARENA_MAX"] = "2"
    with tempfile.TemporaryDirectory(prefix=".hostile-") as tmp:
        port = free_port()
        args_ = ["serve", "--port", str(port), "--data-dir", f"{tmp}/data"]
        daemon = subprocess.Popen([sys.executable, "-m", "service", *args_], env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url)
            first = {"samples": [{"image": base64.b64encode(webp(64)).decode(), "label": "g"}]}
            assert httpx.post(f"{url}/learn", json=first, timeout=60).status_code == 200
            figures = attack(url, daemon.pid, args.seconds)
        finally:
            daemon.terminate()
            daemon.wait(60)
    live = f"{figures['live_p50_s'] * 1000:.1f} / {figures['live_max_s'] * 1000:.1f}"
    rows = "\n".join(f"| {name} | {count} |" for name, count in figures["replies"].items())
    text = f"""{HEADING}

Command: `{command}`

Machine: {where}.

{(__doc__ or "").split(chr(10) + chr(10))[0].replace(chr(10), " ")} The daemon runs the int8
backbone with `MALLOC_ARENA_MAX=2`; a bomb request carries 4 images of {BOMB_SIDE}x{BOMB_SIDE}
(refused from their header: over the decode budget), an under-budget request 2 images of
{BIG_SIDE}x{BIG_SIDE} decoded whole (learned), an empty-samples body is 8 MiB of `{{}}`
(JSON), a lists body 8 MiB of `[]` (msgpack, one byte each). One
client per row below (two for bomb /learn), back to back, for {figures["seconds"]:.0f} s.

| figure | value |
| --- | ---: |
| RSS when the attack starts, MiB | {figures["rss_at_start_mib"]:.0f} |
| peak RSS during the attack (VmHWM), MiB | {figures["peak_rss_mib"]:.0f} |
| `/health/live` polls | {figures["live_polls"]} |
| `/health/live` p50 / max, ms | {live} |

| client, status | replies |
| --- | ---: |
{rows}
"""
    write_section(args.output, HEADING, text)
    print(f"wrote {HEADING!r} in {args.output}")  # noqa: T201


def _wait_ready(url: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the daemon did not become ready")


if __name__ == "__main__":
    main()
