"""The fleet (issue 20): bytes a device sends per round, round time for 3 and 10 devices,
and accuracy after each round on a stream split non-IID over the devices.

    nice -n 5 python -m benchmarks.fleet [--part cost|accuracy|all] [--devices 3 10]
        [--streams fashion digits] [--rounds 5] [--limit-train 10000]

Every run is a real Flower server on loopback running the server's own strategy
(:class:`service.fleet.server.FleetStrategy`, what ``edgecl fleet server`` runs, through
the same legacy ``start_server``), with a gate before each round's ``configure_fit`` so a
round starts only once every device has learned its piece. The devices are in-process
daemon clients: :class:`service.fleet.client.FleetClient` (the daemon's own client, the
same ``start_client`` thread) over an in-memory :class:`service.runtime.LearnerRuntime`
each (no WAL or checkpoints: the rounds' merges go through the same writer-thread head
swap), not Flower's simulation engine, which would run a ClientApp rather than the
daemon's client. Flower telemetry is off.

Bytes per device per round: the serialized Flower ``FitRes`` protobuf each device sends
(``ByteSize()`` of ``serde.fit_res_to_proto``, what the gRPC message carries less its
framing), beside the wire module's payload count (``service.fleet.wire.size``: the
``.npy`` array bytes plus the JSON header). An *idle* round is one in which no device
learned anything since the last merge it applied.
"""

from __future__ import annotations

import argparse
import os
import queue
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # loopback only

from flwr.common import serde  # noqa: E402
from flwr.server.client_manager import ClientManager  # noqa: E402

from benchmarks.bench_common import machine, write_section  # noqa: E402
from edgecl import strategies  # noqa: E402
from edgecl.backbones import IdentityBackbone  # noqa: E402
from edgecl.learner import Learner  # noqa: E402
from service.fleet.client import FleetClient  # noqa: E402
from service.fleet.server import FleetStrategy  # noqa: E402
from service.runtime import LearnerRuntime  # noqa: E402
from service.settings_fleet import FleetSettings  # noqa: E402
from tests.net import free_port  # noqa: E402

HEADING_COST = "## Fleet: bytes per device per round and round time"
HEADING_ACC = "## Fleet: accuracy after each round, non-IID over the devices"
STRATEGIES = ("slda", "ncm", "latent_replay")
FLEET = "bench"


class Sink:
    """The strategy's ``out``: each finished round's JSON line, handed to the driver."""

    def __init__(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue()

    def write(self, text: str) -> None:
        if text.strip():
            self.lines.put(text)

    def flush(self) -> None:
        pass


class GatedStrategy(FleetStrategy):
    """``FleetStrategy`` whose rounds wait for the driver; records the protobuf size of
    each device's ``FitRes`` and of the merge's ``EvaluateIns``."""

    def __init__(self, devices: int, sink: Sink) -> None:
        super().__init__(FLEET, devices, 0.0, sink)  # type: ignore[arg-type]
        self.gate: queue.Queue[bool] = queue.Queue()
        self.proto_sent: list[int] = []
        self.proto_merged = 0

    def configure_fit(self, server_round: int, parameters: Any, client_manager: ClientManager):  # type: ignore[no-untyped-def]
        self.gate.get()
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any):  # type: ignore[no-untyped-def]
        self.proto_sent = [serde.fit_res_to_proto(res).ByteSize() for _, res in results]
        return super().aggregate_fit(server_round, results, failures)

    def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any):  # type: ignore[no-untyped-def]
        out = super().configure_evaluate(server_round, parameters, client_manager)
        self.proto_merged = serde.evaluate_ins_to_proto(out[0][1]).ByteSize() if out else 0
        return out


@dataclass
class Device:
    runtime: LearnerRuntime
    client: FleetClient


@dataclass
class Fleet:
    """``n`` devices of ``strategy`` on ``dim``-d latents joined to one gated server; the
    server runs in the calling (main) thread, as Flower's signal handlers need."""

    strategy: str
    n: int
    dim: int
    rounds: int
    tmp: Path
    sink: Sink = field(default_factory=Sink)

    def run(self, driver: Any) -> Any:
        """Run ``driver(fleet)`` in a thread beside the server; its result."""
        from flwr.compat.server.app import start_server
        from flwr.server import ServerConfig

        self.server = GatedStrategy(self.n, self.sink)
        port = free_port()
        self.devices = []
        for i in range(self.n):
            runtime = LearnerRuntime(Learner(IdentityBackbone(self.dim), make(self.strategy)))
            settings = FleetSettings(
                enabled=True, server=f"127.0.0.1:{port}", id=FLEET, device_id=f"d{i}",
                reconnect_s=0.2,
            )  # fmt: skip
            client = FleetClient(runtime, settings, self.tmp / f"d{i}")
            client.attach()
            runtime.start()
            self.devices.append(Device(runtime, client))
        result: dict[str, Any] = {}

        def drive() -> None:
            wait_listening(port)  # else each client logs a refused connection first
            for d in self.devices:
                d.client.start()
            try:
                result["value"] = driver(self)
            except BaseException as exc:  # reported by the main thread
                result["error"] = exc
                for _ in range(self.rounds):
                    self.server.gate.put(False)
            finally:
                for d in self.devices:
                    d.client.stop()

        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        start_server(
            server_address=f"127.0.0.1:{port}",
            config=ServerConfig(num_rounds=self.rounds, round_timeout=600),
            strategy=self.server,
        )
        thread.join(60)
        for d in self.devices:
            d.runtime.stop()
        if "error" in result:
            raise result["error"]
        return result["value"]

    def round(self) -> dict[str, Any]:
        """Let the next round start; its report once every device applied the merge."""
        import json

        self.server.gate.put(True)
        report: dict[str, Any] = json.loads(self.sink.lines.get(timeout=600))
        report["proto_sent"] = list(self.server.proto_sent)
        report["proto_merged"] = self.server.proto_merged
        if len(report["applied"]) != self.n:
            raise RuntimeError(f"round {report['round']}: only {report['applied']} applied")
        return report


def wait_listening(port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)


def make(strategy: str) -> Any:
    return strategies.create(strategy)


def learn(device: Device, z: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> None:
    for s in range(0, len(y), 256):  # the daemon's default max_samples_per_request
        part = slice(s, s + 256)
        labels = [int(v) for v in y[part]]
        device.runtime.submit_learn(z[part], labels, [None] * len(labels)).result(timeout=600)


# -- cost: bytes and round time -------------------------------------------------------------
def cost(strategy: str, n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``args.cost_rounds`` rounds, each after every device learned ``args.per_round``
    random latents of its classes, then one idle round."""
    rng = np.random.default_rng(0)
    dim, classes = args.dim, args.classes
    owned = [shard_classes(i, n, classes) for i in range(n)]
    means = rng.normal(size=(classes, dim)).astype(np.float32)

    def driver(fleet: Fleet) -> list[dict[str, Any]]:
        reports = []
        for _ in range(args.cost_rounds):
            for i, d in enumerate(fleet.devices):
                y = rng.choice(owned[i], size=args.per_round)
                z = (means[y] + rng.normal(size=(len(y), dim))).astype(np.float32)
                learn(d, z, y)
            reports.append(fleet.round())
        reports.append(fleet.round())  # idle
        return reports

    reports = Fleet(strategy, n, dim, args.cost_rounds + 1, tmp).run(driver)
    learned, idle = reports[:-1], reports[-1]
    return {
        "strategy": strategy,
        "devices": n,
        "wire": [np.mean(list(r["bytes_sent"].values())) for r in learned],
        "proto": [np.mean(r["proto_sent"]) for r in learned],
        "proto_max": max(max(r["proto_sent"]) for r in learned),
        "merged": np.mean([r["proto_merged"] for r in learned]),
        "seconds": [r["seconds"] for r in learned],
        "idle_proto": float(np.mean(idle["proto_sent"])),
        "idle_wire": float(np.mean(list(idle["bytes_sent"].values()))),
        "idle_seconds": idle["seconds"],
        "idle_merged": idle["proto_merged"],
    }


def shard_classes(i: int, n: int, classes: int) -> list[int]:
    """Device ``i``'s classes: for ``n < classes`` the classes ``c`` with ``c % n == i``
    (disjoint, every class on one device); otherwise classes ``i % classes`` and
    ``(i + 1) % classes`` (each class on two devices, split between them)."""
    if n < classes:
        return [c for c in range(classes) if c % n == i]
    return sorted({i % classes, (i + 1) % classes})


def split(y: np.ndarray[Any, Any], n: int, classes: int, seed: int) -> list[np.ndarray[Any, Any]]:
    """Indices of each device's share (see :func:`shard_classes`), each in seeded random
    order; a class's samples are dealt evenly among the devices that hold it."""
    rng = np.random.default_rng(seed)
    holders: dict[int, list[int]] = {c: [] for c in range(classes)}
    for i in range(n):
        for c in shard_classes(i, n, classes):
            holders[c].append(i)
    shares: list[list[np.ndarray[Any, Any]]] = [[] for _ in range(n)]
    for c, owners in holders.items():
        idx = rng.permutation(np.flatnonzero(y == c))
        for k, part in enumerate(np.array_split(idx, len(owners))):
            shares[owners[k]].append(part)
    return [rng.permutation(np.concatenate(s)) for s in shares]


# -- accuracy -------------------------------------------------------------------------------
def accuracy(model: Learner, z: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    p = model.predict_proba_latents(z)
    labels = np.array(model.labels.labels)
    return float(np.mean(labels[np.argmax(p, axis=1)] == y))


def non_iid(
    strategy: str, n: int, train: Any, test: Any, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    classes = int(train.y.max()) + 1
    shares = split(train.y, n, classes, seed=0)
    pieces = [np.array_split(s, args.rounds) for s in shares]
    dim = train.z.shape[1]

    def driver(fleet: Fleet) -> dict[str, Any]:
        rows: dict[str, list[Any]] = {"fleet_mean": [], "fleet_min": [], "seconds": []}
        for r in range(args.rounds):
            for i, d in enumerate(fleet.devices):
                idx = pieces[i][r]
                learn(d, train.z[idx], train.y[idx])
            report = fleet.round()
            accs = []
            for d in fleet.devices:
                with d.runtime.exclusive() as learner:
                    accs.append(accuracy(learner, test.z, test.y))
            rows["fleet_mean"].append(float(np.mean(accs)))
            rows["fleet_min"].append(float(np.min(accs)))
            rows["seconds"].append(report["seconds"])
        return rows

    rows: dict[str, Any] = Fleet(strategy, n, dim, args.rounds, tmp).run(driver)
    # One learner on the whole stream (each round: every device's piece, mixed), and each
    # device alone on its share (no fleet).
    bound = Learner(IdentityBackbone(dim), make(strategy))
    rng = np.random.default_rng(1)
    rows["bound"], rows["alone_mean"], rows["alone_min"] = [], [], []
    solo = [Learner(IdentityBackbone(dim), make(strategy)) for _ in range(n)]
    for r in range(args.rounds):
        idx = rng.permutation(np.concatenate([p[r] for p in pieces]))
        batch_learn(bound, train.z[idx], train.y[idx])
        rows["bound"].append(accuracy(bound, test.z, test.y))
        alone: list[float] = []
        for i, model in enumerate(solo):
            batch_learn(model, train.z[pieces[i][r]], train.y[pieces[i][r]])
            alone.append(accuracy(model, test.z, test.y))
        rows["alone_mean"].append(float(np.mean(alone)))
        rows["alone_min"].append(float(np.min(alone)))
    rows.update(strategy=strategy, devices=n, train=len(train), test=len(test))
    return rows


def batch_learn(model: Learner, z: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> None:
    for s in range(0, len(y), 256):  # as the daemon's writer gets them
        model.learn_latents(z[s : s + 256], [int(v) for v in y[s : s + 256]])


# -- report ---------------------------------------------------------------------------------
def command() -> str:
    return ("nice -n 5 python -m benchmarks.fleet " + shlex.join(sys.argv[1:])).strip()


def kib(b: float) -> str:
    return f"{b / 1024:,.1f}"


def cost_section(rows: list[dict[str, Any]], args: argparse.Namespace, started: str) -> str:
    lines = [
        HEADING_COST,
        "",
        f"Command: `{command()}`",
        "",
        f"Machine: {started}",
        "",
        f"A real Flower server on loopback running `edgecl fleet server`'s strategy, and "
        f"in-process daemon clients (`service.fleet.client.FleetClient`, each over its own "
        f"in-memory `LearnerRuntime`; not Flower's simulation engine), all in one process on "
        f"the shared 2-core machine. {args.dim}-d float32 latents of {args.classes} classes, "
        f"class shards as in the accuracy section (3 devices: disjoint classes; 10: two "
        f"classes each). Each round follows every device learning {args.per_round} new "
        f"samples of its classes ({args.cost_rounds} rounds), then one *idle* round (nothing "
        "learned since the merge). *Sent*: the serialized `FitRes` protobuf a device sends "
        "(`ByteSize()`), mean over devices and rounds, its largest beside it; *wire*: "
        "`service.fleet.wire.size` of the same message (`.npy` arrays plus the JSON header). "
        "*Merge*: the `EvaluateIns` protobuf the server sends back to each device. *Round*: "
        "the strategy's own round time (first device asked to send until every device "
        "answered that the merge is applied and durable), median over the rounds (min–max).",
        "",
        "| strategy | devices | sent KiB/device/round (max) | wire KiB | merge KiB | "
        "round s, median (min–max) | idle round: sent bytes/device | idle: merge KiB | "
        "idle round s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["seconds"]
        lines.append(
            f"| `{r['strategy']}` | {r['devices']} | {kib(np.mean(r['proto']))} "
            f"({kib(r['proto_max'])}) | {kib(np.mean(r['wire']))} | {kib(r['merged'])} | "
            f"{np.median(s):.3f} ({min(s):.3f}–{max(s):.3f}) | {r['idle_proto']:.0f} | "
            f"{kib(r['idle_merged'])} | "
            f"{r['idle_seconds']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def acc_section(
    rows: list[dict[str, Any]], args: argparse.Namespace, started: str, heading: str, name: str
) -> str:
    r0 = rows[0]
    lines = [
        heading,
        "",
        f"Command: `{command()}`",
        "",
        f"Machine: {started}",
        "",
        f"{name}: pooled int8 EfficientNet-Lite0 latents (1280-d), the first {r0['train']} "
        f"training images as the stream, all {r0['test']} test images to score. Split over "
        "the devices by class shards (seeded): with 3 devices the classes are disjoint "
        "(device i holds the classes c with c mod 3 = i: 4, 3 and 3 classes), with 10 devices "
        "device i holds classes i and i+1 mod 10 (each class's samples dealt evenly between "
        f"its two devices). Each device learns its share in {args.rounds} equal pieces (in a "
        "seeded random order), one before each round; after the round, the accuracy of each "
        "device's model on the full test set (*fleet*: mean and min over devices; scored "
        "right after the merge is applied, before any device learns more, so every device "
        "holds the same model and min equals mean). *Whole "
        "stream*: one learner of the same strategy learning every device's piece of each "
        "round (mixed), the bound; *alone*: each device learning its share with no fleet "
        "(mean, min). Same server and clients as the cost section; default strategy settings.",
        "",
        "| strategy | devices | after round | fleet mean | fleet min | whole stream | "
        "alone mean | alone min | round s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for k in range(len(r["bound"])):
            lines.append(
                f"| `{r['strategy']}` | {r['devices']} | {k + 1} | {r['fleet_mean'][k]:.3f} | "
                f"{r['fleet_min'][k]:.3f} | {r['bound'][k]:.3f} | {r['alone_mean'][k]:.3f} | "
                f"{r['alone_min'][k]:.3f} | {r['seconds'][k]:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["cost", "accuracy", "all"], default="all")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--devices", nargs="+", type=int, default=[3, 10])
    parser.add_argument("--streams", nargs="+", default=["fashion"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit-train", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=1280, help="cost: latent size")
    parser.add_argument("--classes", type=int, default=10, help="cost: classes")
    parser.add_argument("--per-round", type=int, default=100, help="cost: samples per device")
    parser.add_argument("--cost-rounds", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path("edgecl-data"))
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)  # a line per message otherwise
    started = machine()
    with tempfile.TemporaryDirectory(prefix="edgecl-fleet-") as tmp:
        if args.part in ("cost", "all"):
            rows = []
            for strategy in args.strategies:
                for n in args.devices:
                    t = time.perf_counter()
                    rows.append(cost(strategy, n, args, Path(tmp)))
                    print(rows[-1], f"{time.perf_counter() - t:.1f} s", flush=True)
            write_section(args.out, HEADING_COST, cost_section(rows, args, started))
        if args.part in ("accuracy", "all"):
            from edgecl.bench.streams import fashion_latents

            for stream in args.streams:
                train, test, _ = fashion_latents(
                    args.data_dir / "bench", args.data_dir / "backbone", "pooled",
                    limit_train=args.limit_train, stream=stream,
                )  # fmt: skip
                rows = []
                for strategy in args.strategies:
                    for n in args.devices:
                        t = time.perf_counter()
                        rows.append(non_iid(strategy, n, train, test, args, Path(tmp)))
                        print(rows[-1], f"{time.perf_counter() - t:.1f} s", flush=True)
                name = {"fashion": "Fashion-MNIST", "digits": "scikit-learn digits"}[stream]
                heading = HEADING_ACC if stream == "fashion" else f"{HEADING_ACC} ({stream})"
                write_section(args.out, heading, acc_section(rows, args, started, heading, name))


if __name__ == "__main__":
    main()
