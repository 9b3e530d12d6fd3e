"""Service load: /learn images/s through the real int8 backbone (single-sample and batch-32
requests, JSON and msgpack) beside the backbone-only rate measured in the same run, and
/predict p50/p95/p99 at concurrency 1, 4 and 16 while a learn load runs; writes its
BENCHMARKS.md section.

    nice -n 5 python -m benchmarks.service_load [--seconds 8] [--strategies slda ncm]
        [--learn-clients 1 2 4 8]

The backbone is built once into a cache folder (``--backbone-dir`` to use another).
Images are Fashion-MNIST fixture images sent as PNG (base64 in JSON, bytes in msgpack).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgpack
import numpy as np

from benchmarks.bench_common import (
    MSGPACK,
    backbone_dir,
    daemon_env,
    machine_line,
    pct,
    png,
    rss_mib,
    write_section,
)
from benchmarks.load_clients import Requests, run_clients
from edgecl.backbones.onnx import OnnxBackbone
from edgecl.backbones.preprocess import decode_image
from edgecl.cpus import usable_cpus
from edgecl.datasets import load_fixture
from tests.service.daemon import Daemon

T = TypeVar("T")
HEADING = "## Service throughput and /predict latency under learn load"


def images() -> tuple[list[bytes], list[str]]:
    train, _ = load_fixture()
    n = min(512, len(train.labels))
    return [png(im) for im in train.images[:n]], [f"c{y}" for y in train.labels[:n]]


def body(pngs: list[bytes], labels: list[str], kind: str, key: str = "samples") -> bytes:
    if kind == "json":
        samples = [
            {"image": base64.b64encode(p).decode(), "label": y}
            for p, y in zip(pngs, labels, strict=True)
        ]
        return json.dumps({key: samples}).encode()
    packed: bytes = msgpack.packb(
        {key: [{"image": p, "label": y} for p, y in zip(pngs, labels, strict=True)]}
    )
    return packed


def predict_body(image: bytes) -> bytes:
    packed: bytes = msgpack.packb({"samples": [{"image": image}], "top_k": 1})
    return packed


def backbone_rate(
    manifest: Path, pngs: list[bytes], batch: int, seconds: float, threads: int | None = None
) -> float:
    """Images/s of OnnxBackbone.embed on the decoded images (resize and normalise included)."""
    model = OnnxBackbone.from_manifest(manifest, intra_op_threads=threads)
    arrays = [decode_image(p) for p in pngs]
    model.embed(np.stack(arrays[:batch]))  # warm-up
    done, k, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = [arrays[(k + i) % len(arrays)] for i in range(batch)]
        model.embed(np.stack(chunk))
        done, k = done + batch, k + batch
    return done / (time.perf_counter() - start)


def modes(args: argparse.Namespace) -> list[tuple[str, dict[str, str]]]:
    """(label, daemon settings) per ``--modes`` entry ``label`` or ``label:name=value,...``:
    ``off`` and ``on`` are embed batching off and on, with nothing else set; ``code=DIR``
    runs that daemon from the checkout in DIR instead of this one."""
    out = []
    for spec in args.modes:
        label, _, rest = spec.partition(":")
        settings = {"off": {"embed_batching": "false"}, "on": {"embed_batching": "true"}}.get(
            label, {}
        )
        for pair in filter(None, rest.split(",")):
            name, _, value = pair.partition("=")
            settings[name] = value
        out.append((label, settings))
    labels = [label for label, _ in out]
    if len(set(labels)) < len(labels):
        raise SystemExit(f"--modes: give each mode its own label, got {labels}")
    return out


def cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (None: this one), all threads."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def load_now() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def rotated(items: list[T], k: int) -> list[T]:
    """``items`` starting at its ``k``-th: each round of modes starts with another one."""
    k %= len(items)
    return items[k:] + items[:k]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """All modes' daemons run at once (idle but one); every row runs on each in turn, for
    ``--repeats`` rounds, so a shared machine's changing load falls on every mode alike."""
    folder = backbone_dir(args.backbone_dir)
    manifest = folder / "efficientnet-lite0-pooled" / "manifest.json"
    pngs, labels = images()
    n = len(pngs)
    out: dict[str, Any] = {"learn": [], "predict": [], "rss": {}, "modes": modes(args)}
    threads = (
        {} if args.backbone_threads is None else {"backbone_threads": str(args.backbone_threads)}
    )
    learn_bodies = [body(pngs[i : i + 8], labels[i : i + 8], "msgpack") for i in range(0, n, 8)]
    preds = [predict_body(p) for p in pngs]
    for strategy in args.strategies:
        with contextlib.ExitStack() as stack:
            daemons: dict[str, Daemon] = {}
            for mode, settings in out["modes"]:
                tmp = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix=".service-load-", dir=Path.cwd())
                )
                # A mode's own settings win over the command line's; its `code` is the
                # checkout its daemon runs (another branch, for before and after).
                named = {k: v for k, v in settings.items() if k != "code"}
                env = daemon_env(folder, **{"strategy__name": strategy, **threads, **named})
                if "code" in settings:
                    # PYTHONSAFEPATH: not the current directory's checkout ahead of it.
                    env["PYTHONPATH"] = str(Path(settings["code"]).resolve())
                    env["PYTHONSAFEPATH"] = "1"
                daemons[mode] = stack.enter_context(Daemon(Path(tmp) / "data", env))
            for row, clients in [(r, c) for r in args.learn_rows for c in args.learn_clients]:
                kind, _, size = row.partition(":")
                batch = int(size or 1)
                ctype = "application/json" if kind == "json" else MSGPACK
                bodies = [
                    body([pngs[(i + j) % n] for j in range(batch)],
                         [labels[(i + j) % n] for j in range(batch)], kind)
                    for i in range(0, n, batch)
                ]  # fmt: skip
                runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in daemons}
                refs = []
                for k in range(args.repeats):
                    # The reference in every round: the machine is shared.
                    refs.append(
                        backbone_rate(manifest, pngs, batch, args.seconds, args.backbone_threads)
                    )
                    for mode in rotated(list(daemons), k):
                        d = daemons[mode]
                        at: dict[str, Any] = {}
                        pid = d.process.pid

                        def started() -> None:
                            at.update(load=load_now(), cpu=cpu_s(pid), own=cpu_s())  # noqa: B023

                        run = run_clients(d.url, args.seconds, clients,
                                          Requests("/learn", bodies, ctype),
                                          processes=args.client_processes,
                                          started=started)  # fmt: skip
                        runs[mode].append({"elapsed": run.elapsed, "lat": run.lat,
                                           "images": run.accepted,
                                           "cpu": cpu_s(pid) - at["cpu"],
                                           "own": cpu_s() - at["own"] + run.client_cpu,
                                           "load": at["load"]})  # fmt: skip
                bb = sum(refs) / len(refs)
                for mode, parts in runs.items():
                    r = pooled(parts)
                    result = {"strategy": strategy, "mode": mode, "kind": kind, "batch": batch,
                              "clients": clients, "backbone": bb, "ratio": r["rate"] / bb,
                              **r}  # fmt: skip
                    out["learn"].append(result)
                    print({k: v for k, v in result.items() if k != "lat"}, flush=True)  # noqa: T201
            for mode, d in daemons.items():
                out["rss"][f"{strategy} {mode}"] = rss_mib(d.process.pid)
            for load, conc, pace in [
                (lo, c, p)
                for lo in args.learn_loads
                for c in args.concurrency
                for p in args.predict_rates
            ]:
                runs = {mode: [] for mode in daemons}
                for k in range(args.repeats):
                    for mode in rotated(list(daemons), k):
                        d = daemons[mode]
                        runs[mode].append(
                            predict_row(
                                d.url, d.process.pid, args, load, conc, learn_bodies, preds, pace
                            )  # fmt: skip
                        )
                for mode, parts in runs.items():
                    r = pooled(parts)
                    learned = sum(p["learned"] for p in parts) / r["elapsed"]
                    result = {"strategy": strategy, "batching": mode, "load": load,
                              "conc": conc, "pace": pace, "learned_s": learned,
                              "rps": r["rate"],
                              "p95": pct(r["lat"], 0.95), "n": len(r["lat"]),
                              "load_avg": r["load"], **{k: r[k] for k in
                              ("p50", "p99", "daemon_ms", "client_ms")}}  # fmt: skip
                    out["predict"].append(result)
                    print(result, flush=True)  # noqa: T201
    return out


def pooled(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one row on one daemon as one: rate over all of them, latencies pooled,
    CPU per image (daemon and this process's clients), the first round's load."""
    elapsed = sum(p["elapsed"] for p in parts)
    images = sum(p["images"] for p in parts)
    lat = [x for p in parts for x in p["lat"]]
    return {"rate": images / elapsed, "elapsed": elapsed, "lat": lat,
            "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "load": parts[0]["load"],
            "daemon_ms": 1000 * sum(p["cpu"] for p in parts) / max(images, 1),
            "client_ms": 1000 * sum(p["own"] for p in parts) / max(images, 1)}  # fmt: skip


def predict_row(url: str, pid: int, args: argparse.Namespace, load: float, conc: int,
                learn_bodies: list[bytes], preds: list[bytes],
                pace: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """/predict latencies at ``conc`` clients (back to back, or each at ``pace``
    requests/s) while one client learns 8-image msgpack batches at ``load`` images/s (0:
    back to back); ``images`` counts predictions only, CPU is per backbone image (predicted
    and learned)."""
    stop = threading.Event()
    learned = [0]

    def learner() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            k, start = 0, time.perf_counter()
            while not stop.is_set():
                reply = http.post("/learn", content=learn_bodies[k % len(learn_bodies)],
                                  headers={"content-type": MSGPACK})  # fmt: skip
                learned[0] += int(reply.json().get("accepted", 0))
                k += 1
                if load > 0:  # pace to `load` images/s
                    stop.wait(max(0.0, start + learned[0] / load - time.perf_counter()))

    thread = threading.Thread(target=learner)
    thread.start()
    time.sleep(1.0)  # the load is running before the first prediction
    marks: dict[str, Any] = {}

    def started() -> None:  # what the learn load and the CPUs were when predictions began
        marks.update(before=learned[0], load=load_now(), cpu=cpu_s(pid), own=cpu_s())

    try:
        run = run_clients(url, args.seconds, conc, Requests("/predict", preds, MSGPACK),
                          rate=pace, processes=args.client_processes,
                          started=started)  # fmt: skip
    finally:
        stop.set()
        thread.join()
    elapsed, lat = run.elapsed, run.lat
    before, load_avg, cpu0, own0 = marks["before"], marks["load"], marks["cpu"], marks["own"]
    # CPU per backbone image: predictions and learned images, counted as predictions
    # here so that pooled() divides by them all.
    share = len(lat) / max(len(lat) + learned[0] - before, 1)
    return {"elapsed": elapsed, "lat": lat, "images": len(lat),
            "learned": learned[0] - before, "load": load_avg,
            "cpu": (cpu_s(pid) - cpu0) * share,
            "own": (cpu_s() - own0 + run.client_cpu) * share}  # fmt: skip


def threads_text(threads: int | None) -> str:
    if threads is None:
        return (
            "the daemon's default threads (with embed batching a lane per core, one ONNX "
            "Runtime thread each; without, ONNX Runtime's default, one per core, per run; the "
            "backbone-only reference at ONNX Runtime's default)"
        )
    return f"{threads} ONNX Runtime thread{'s' if threads > 1 else ''} per run"


def clients_text(processes: bool) -> str:
    kind = "the benchmark's HTTP/1.1 clients on bare keep-alive sockets"
    if processes:
        return f"({kind}, each in a process of its own)"
    return (
        f"({kind}, threads of one process: they share its interpreter lock, so part of a "
        "reply's latency can be another client's Python)"
    )


def mode_text(mode: str, settings: dict[str, str]) -> str:
    named = ", ".join(f"`{k}` {v}" for k, v in settings.items())
    return f"*{mode}*: {named or 'the defaults'}"


def section(command: str, where: str, args: argparse.Namespace, r: dict[str, Any]) -> str:
    lines = [
        HEADING, "", f"Command: `{command}`", "", f"Machine: {where}.", "",
        "One daemon per strategy and mode (`python -m service serve`, the int8 "
        f"EfficientNet-Lite0 backbone at {threads_text(args.backbone_threads)}, strategy as in "
        "the table, default store, probe and WAL fsync `always`). Modes: "
        + "; ".join(mode_text(m, s) for m, s in r["modes"]) + ". "
        "Inputs are the Fashion-MNIST fixture images as PNG (28x28, resized to 224 in the "
        "daemon), base64 in JSON or bytes in msgpack. *Clients* "
        + clients_text(args.client_processes)
        + f" post back to back for {args.seconds:.0f} s per row, on the same "
        f"{usable_cpus()} cores as the daemon; a server's rate is its rate at enough clients, so "
        "each count is a row of its own, against the same backbone-only reference. "
        "*Backbone only* is `OnnxBackbone.embed` in the benchmark process on the same images, "
        "decoded (resize and normalise included), one batch at a time at the row's batch "
        "size, measured right before the row (the machine is shared); the ratio is HTTP over "
        "backbone only. Every row runs on each mode's daemon in turn (the others idle), "
        f"{args.repeats} rounds with the mode order rotated, pooled; the reference runs once "
        "per round. *CPU ms/image*: user + system CPU of the daemon, and of the benchmark "
        "clients, per image; with N cores no closed loop passes "
        "N x 1000 / (daemon + client) images/s. *Load* is the load average (1, 5, 15 min) "
        "when the row's first round started.",
        "",
        "| strategy | mode | body | images per request | clients | images/s "
        "| backbone only images/s "
        "| ratio | reply p50 ms | reply p99 ms | daemon CPU ms/image | client CPU ms/image "
        "| load |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- |",
    ]  # fmt: skip
    for row in r["learn"]:
        lines.append(
            f"| `{row['strategy']}` | {row['mode']} | {row['kind']} | {row['batch']} "
            f"| {row['clients']} "
            f"| {row['rate']:.1f} | {row['backbone']:.1f} | {row['ratio']:.0%} "
            f"| {row['p50']:.1f} | {row['p99']:.1f} | {row['daemon_ms']:.1f} "
            f"| {row['client_ms']:.1f} | {row['load']} |"
        )
    lines += [
        "",
        "Daemon RSS after these rows: "
        + ", ".join(f"`{k}` {v:.0f} MiB" for k, v in r["rss"].items())
        + ".",
        "",
        "/predict latency: each request is one PNG image (msgpack, `top_k` 1); *clients* "
        + clients_text(args.client_processes)
        + " send back to back (*each client's rate* —) or each at a fixed rate (a "
        "camera's frame rate; latency counted from when the request was due, so a late "
        "reply also delays the next request's count) while one more client learns 8-image "
        "msgpack requests, "
        "paced to the *learn load* (images/s; *max* is back to back). *Learned/s* is what "
        "that client achieved during the row (a thread of the benchmark process). In a "
        "closed loop, latency is about clients / (predictions/s). CPU per image counts the "
        "learned images too.",
        "",
        "| strategy | mode | learn load images/s | clients | each client's rate /s "
        "| learned/s | "
        "predictions/s | p50 ms | p95 ms | p99 ms | requests | daemon CPU ms/image "
        "| client CPU ms/image | load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |",
    ]
    for p in r["predict"]:
        load = "max" if p["load"] == 0 else f"{p['load']:.0f}"
        pace = "—" if not p.get("pace") else f"{p['pace']:g}"
        lines.append(
            f"| `{p['strategy']}` | {p['batching']} | {load} | {p['conc']} | {pace} "
            f"| {p['learned_s']:.1f} | {p['rps']:.1f} | {p['p50']:.1f} | {p['p95']:.1f} "
            f"| {p['p99']:.1f} | {p['n']} | {p['daemon_ms']:.1f} | {p['client_ms']:.1f} "
            f"| {p['load_avg']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per row")
    parser.add_argument(
        "--learn-clients",
        "--clients",
        type=int,
        nargs="+",
        default=[2],
        help="/learn rows: client threads, each count a row of its own",
    )
    parser.add_argument("--strategies", nargs="+", default=["slda", "ncm"])
    parser.add_argument(
        "--learn-loads",
        type=float,
        nargs="+",
        default=[30.0, 0.0],
        help="images/s of the learn load under /predict (0: back to back)",
    )
    parser.add_argument(
        "--learn-rows",
        nargs="*",
        default=["json:1", "json:32", "msgpack:1", "msgpack:32"],
        help="/learn rows as body:images-per-request",
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="*", default=[1, 4, 16], help="/predict clients"
    )
    parser.add_argument(
        "--predict-rates",
        type=float,
        nargs="+",
        default=[0.0],
        help="/predict requests/s per client, each a row of its own (0: back to back)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["off", "on"],
        help="daemons to compare: off, on (embed batching), or label:name=value,...",
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds of every row over the modes")
    parser.add_argument("--backbone-dir", type=Path, default=None)
    parser.add_argument(
        "--backbone-threads", type=int, default=None, help="ONNX Runtime threads (default: its own)"
    )
    parser.add_argument(
        "--client-processes",
        action="store_true",
        help="each HTTP client in a process of its own (default: threads of this one)",
    )
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = "nice -n 5 " + shlex.join(["python", "-m", "benchmarks.service_load", *sys.argv[1:]])
    where = machine_line()
    result = measure(args)
    write_section(args.output, HEADING, section(command, where, args, result))
    print(f"wrote {HEADING!r} in {args.output}")  # noqa: T201


if __name__ == "__main__":
    main()
