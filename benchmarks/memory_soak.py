"""Memory soak: daemon RSS and store bytes over up to 1M learned `features` samples.

RSS at 10k, 100k, 300k and 1M samples and when the replay store first fills, and whether
torch got imported; writes its BENCHMARKS.md section.

    nice -n 5 python -m benchmarks.memory_soak [--budget-s 270] [--strategies slda ncm]
    nice -n 5 python -m benchmarks.memory_soak --strategies ar1 ar1_cl --append

Each strategy (a preset of daemon settings and request bodies, see ``PRESETS``) gets a fresh
daemon (identity backbone, WAL fsync ``group``) fed msgpack bodies by two client threads; a
strategy that does not reach 1M samples within ``--budget-s`` stops there and the table says
how far it got. The daemon runs with ``MALLOC_ARENA_MAX=2`` as deployed (Dockerfile, systemd
unit); ``--malloc-arena-max 0`` leaves glibc's default. ``--append`` adds the run below the
runs already in the section instead of replacing them.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.bench_common import (
    BACKBONE_CACHE,
    MSGPACK,
    daemon_env,
    features_body,
    latents,
    machine_line,
    rss_mib,
    torch_loaded,
    write_section,
)
from edgecl.bench.recipes import AR1_OPTIONS
from tests.service.daemon import Daemon

HEADING = "## Memory soak (RSS and store bytes over 1M samples)"
MARKS = (10_000, 100_000, 300_000, 1_000_000)
AR1_CUT, AR1_DIM = "block14", 192 * 7 * 7
#: Daemon settings that let the soak's large bodies through and batch them (``Preset.limits``).
RAISED_LIMITS = {
    "max_batch": "1024",
    "max_samples_per_request": "1024",
    "max_body_bytes": str(16 << 20),
    "checkpoint_every_samples": "100000",
}


@dataclass(frozen=True)
class Preset:
    """One soak row: the daemon's ``EDGECL_*`` settings and the bodies the clients send.

    >>> Preset({"strategy__name": "ncm"}).body
    1024
    """

    settings: dict[str, str]
    dim: int = 1280  # latent size of each `features` row
    body: int = 1024  # samples per request
    options: dict[str, Any] = field(default_factory=dict)  # strategy options
    top: bool = False  # options.top = the AR1_CUT build's manifest
    limits: bool = True  # raise the daemon's request, micro-batch and checkpoint limits


PRESETS = {
    "slda": Preset({"strategy__name": "slda"}),
    "ncm": Preset({"strategy__name": "ncm"}),
    # AR1 as `EDGECL_STRATEGY__NAME=ar1` gives it (its defaults) on block14 latents.
    "ar1": Preset(
        {"strategy__name": "ar1", "store__kind": "latent_replay"}, AR1_DIM, 300, top=True
    ),
    # AR1 with the options of `edgecl bench cl`.
    "ar1_cl": Preset(
        {"strategy__name": "ar1", "store__kind": "latent_replay"},
        AR1_DIM,
        150,
        options=AR1_OPTIONS,
        top=True,
    ),
}


# `slda` fed as a camera would feed it: bodies of 8 samples, each a micro-batch of its own
# or a few together (not 1024 at once, which folds Σ and factorises at every batch), with
# the daemon's own limits and checkpoints.
PRESETS["slda_small"] = replace(PRESETS["slda"], body=8, limits=False)

# AR1's defaults in a daemon at its own defaults too: micro-batches of at most 64 samples
# (a request is one when larger), bodies of 64, checkpoints as it schedules them.
PRESETS["ar1_daemon"] = replace(PRESETS["ar1"], body=64, limits=False)


def preset_env(name: str, backbone_dir: Path, arena_max: int) -> dict[str, str]:
    preset = PRESETS[name]
    options = dict(preset.options)
    if preset.top:
        from edgecl.backbones.build import ensure_backbone

        options["top"] = str(ensure_backbone(backbone_dir, AR1_CUT))
    env = daemon_env(
        None,
        wal_fsync="group",
        latent_dim=str(preset.dim),
        **(RAISED_LIMITS if preset.limits else {}),
        **preset.settings,
    )
    if options:
        env["EDGECL_STRATEGY__OPTIONS"] = json.dumps(options)
    env.pop("MALLOC_ARENA_MAX", None)
    if arena_max:
        env["MALLOC_ARENA_MAX"] = str(arena_max)
    return env


def soak(data: Path, strategy: str, env: dict[str, str], budget_s: float) -> list[dict[str, Any]]:
    preset = PRESETS[strategy]
    rng = np.random.default_rng(0)
    # No ids: ids would make every body unique; without them re-sent bodies are learned again.
    bodies = [features_body(*latents(preset.body, preset.dim, rng), None) for _ in range(8)]
    rows: list[dict[str, Any]] = []
    # AR1 holds the writer lock for a whole batch, which /stats waits for: long timeouts.
    with Daemon(data, env) as daemon, httpx.Client(base_url=daemon.url, timeout=900) as http:
        pid = daemon.process.pid

        def record(elapsed: float, when: str, stats: dict[str, Any] | None = None) -> None:
            rows.append(row(stats or http.get("/stats").json(), pid, elapsed, strategy, when))
            print(rows[-1], flush=True)  # noqa: T201

        record(0.0, "ready")
        stop = threading.Event()
        errors: list[str] = []

        def client(k: int) -> None:
            with httpx.Client(base_url=daemon.url, timeout=900) as mine:
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
        marks, full = list(MARKS), False
        try:
            while marks and not errors and time.monotonic() - start < budget_s:
                stats = http.get("/stats").json()
                elapsed = time.monotonic() - start
                when = []
                if not full and store_full(stats["store"]):
                    full = True
                    when.append("store full")
                while marks and stats["samples_learned"] >= marks[0]:
                    when.append(label(marks.pop(0)))
                if when:
                    record(elapsed, ", ".join(when), stats)
                time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        if errors:
            raise RuntimeError(errors[0])
        if marks:  # out of time: where it got to, once the requests in flight are done
            record(time.monotonic() - start, "end of budget")
    return rows


def label(mark: int) -> str:
    return f"{mark // 1_000_000}M" if mark >= 1_000_000 else f"{mark // 1000}k"


def store_full(store: dict[str, Any]) -> bool:
    """No room for one more item of the size held."""
    items = int(store["items"])
    return items > 0 and store["max_bytes"] - store["bytes"] < store["bytes"] / items


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (the kernel's ``VmHWM``)."""
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(found.group(1)) / 1024 if found else float("nan")


def row(
    stats: dict[str, Any], pid: int, elapsed: float, strategy: str, when: str
) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "when": when,
        "learned": int(stats["samples_learned"]),
        "elapsed": elapsed,
        "rss": rss_mib(pid),
        "peak": peak_rss_mib(pid),
        "store_items": int(stats["store"]["items"]),
        "store_mib": stats["store"]["bytes"] / 2**20,
        "torch": torch_loaded(pid),
    }


INTRO = (
    "One fresh daemon per strategy (`python -m service serve`, identity backbone on "
    "float32 `features`, the default probe, WAL fsync `group`, micro-batches up to 1024 "
    "samples, checkpoints every 100k samples or 60 s; `ar1_daemon` keeps the daemon's "
    "own). Two client threads post msgpack bodies (ten structured classes) back to back. "
    "`slda` and `ncm`: 1280-d rows (the pooled latents), the default `class_balanced` "
    "int8 store of 16 MiB, bodies of 1024 samples. `ar1`, `ar1_daemon` and `ar1_cl`: "
    f"{AR1_DIM}-d rows (the {AR1_CUT} latents, 192x7x7, flattened), strategy `ar1` with "
    f"`top` the manifest of a `{AR1_CUT}` build (its layers above the cut train in torch), "
    "the `latent_replay` int8 store of 16 MiB (about 1780 latents); `ar1` keeps AR1's "
    "defaults (1500 replayed latents per batch, 4 epochs, minibatches of 128) with bodies "
    "of 300 samples, `ar1_cl` the options of `edgecl bench cl` (300 replayed, 1 epoch, "
    "minibatches of 16) with bodies of 150. `ar1_daemon` is `ar1` in a daemon at its own "
    "defaults (micro-batches of at most 64 samples, at most 256 samples and 8 MiB per "
    "request, checkpoints as the daemon schedules them) with bodies of 64 samples, as a "
    "device posting a few frames at a time would. The identity backbone loads no ONNX "
    "Runtime session: a daemon with the int8 backbone needs more (see *Start-up*). *RSS* "
    "is the daemon process's resident set (psutil) when `/stats` first reports the store "
    "full or at least that many samples learned; *peak* is the kernel's high-water mark "
    "of the resident set (`VmHWM`) up to then; *store* is `/stats` `store.bytes` and "
    "`store.items`; *torch* says whether libtorch is mapped into the daemon "
    "(`/proc/PID/maps`). The *ready* row is the daemon just after start-up; *end of "
    "budget* is where a strategy was when its time budget ran out (after the requests in "
    "flight finished)."
)


def run_block(
    command: str, where: str, rows: list[dict[str, Any]], budget_s: float, arena_max: int
) -> str:
    names = ", ".join(f"`{s}`" for s in dict.fromkeys(r["strategy"] for r in rows))
    arena = f"with `MALLOC_ARENA_MAX={arena_max}`" if arena_max else "without `MALLOC_ARENA_MAX`"
    env = (
        f"`MALLOC_ARENA_MAX={arena_max}` (glibc malloc arenas capped, as deployed)"
        if arena_max
        else "`MALLOC_ARENA_MAX` unset (glibc's default: up to 8 arenas per core)"
    )
    lines = [
        f"### {names} {arena}",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {where}.",
        "",
        f"Daemon environment: {env}. Time budget per strategy: {budget_s:.0f} s.",
        "",
        "| strategy | when | samples learned | elapsed s | samples/s | RSS MiB | peak RSS MiB "
        "| store items | store MiB | torch imported |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        rate = f"{r['learned'] / r['elapsed']:.0f}" if r["elapsed"] else ""
        lines.append(
            f"| `{r['strategy']}` | {r['when']} | {r['learned']} | {r['elapsed']:.0f} | {rate} "
            f"| {r['rss']:.0f} | {r['peak']:.0f} | {r['store_items']} | {r['store_mib']:.1f} "
            f"| {'yes' if r['torch'] else 'no'} |"
        )
    lines += ["", growth(rows)]
    return "\n".join(lines) + "\n"


def growth(rows: list[dict[str, Any]]) -> str:
    """RSS growth per strategy from the 100k row (else the store-full row) to the last row."""
    parts = []
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == strategy]
        base = next((r for r in mine if "100k" in r["when"].split(", ")), None)
        base = base or next((r for r in mine if "store full" in r["when"].split(", ")), None)
        last = mine[-1]
        if base is None or last is base:
            parts.append(f"`{strategy}`: did not get past 100k samples or a full store")
            continue
        change = 100 * (last["rss"] / base["rss"] - 1)
        parts.append(
            f"`{strategy}`: RSS {base['rss']:.0f} MiB at {base['learned']} samples "
            f"({base['when']}), {last['rss']:.0f} MiB at {last['learned']} ({change:+.1f}%), "
            f"peak {max(r['peak'] for r in mine):.0f} MiB"
        )
    return (
        "RSS growth from the 100k row (or, short of it, the store-full row) to the last row: "
        + "; ".join(parts)
        + "."
    )


def append_to_section(path: Path, text: str) -> None:
    """Add ``text`` at the end of the section (re-read right before writing)."""
    old = path.read_text()
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(old)
    if found is None:
        raise SystemExit(f"--append: no {HEADING!r} section in {path}")
    end = found.end()
    new = old[:end].rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n\n" + old[end:]
    path.write_text(new.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=270.0, help="seconds per strategy")
    parser.add_argument("--strategies", nargs="+", default=["slda", "ncm"], choices=PRESETS)
    parser.add_argument(
        "--malloc-arena-max", type=int, default=2, help="the daemon's MALLOC_ARENA_MAX; 0: unset"
    )
    parser.add_argument("--append", action="store_true", help="add this run to the section")
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where the data dir goes")
    parser.add_argument(
        "--backbone-dir", type=Path, default=BACKBONE_CACHE, help=f"{AR1_CUT} build for ar1"
    )
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = "nice -n 5 " + shlex.join(["python", "-m", "benchmarks.memory_soak", *sys.argv[1:]])
    where = machine_line()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".memory-soak-") as tmp:
        for strategy in args.strategies:
            env = preset_env(strategy, args.backbone_dir, args.malloc_arena_max)
            rows += soak(Path(tmp) / strategy / "data", strategy, env, args.budget_s)
    block = run_block(command, where, rows, args.budget_s, args.malloc_arena_max)
    if args.append:
        append_to_section(args.output, block)
    else:
        write_section(args.output, HEADING, f"{HEADING}\n\n{INTRO}\n\n{block}")
    print(f"wrote {HEADING!r} in {args.output}")  # noqa: T201


if __name__ == "__main__":
    main()
