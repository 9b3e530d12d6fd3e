"""Learn throughput over MQTT beside HTTP: one daemon, one broker, same machine, same run.

Run from the repository root (needs the Debian ``mosquitto`` package); it rewrites its
section of BENCHMARKS.md::

    python benchmarks/mqtt_vs_http.py

The daemon runs as a real process (``edgecl serve``) on the identity backbone with ncm, so
what is measured is the transport, validation, WAL (fsync ``always``) and the writer, not a
backbone. Samples are 1280-d float32 latents (the size of the int8 EfficientNet-Lite0
pooled latent) sent as packed msgpack arrays, with a sample id and one of ten labels.
HTTP: each client thread posts and waits for the reply (acknowledged once in the WAL).
MQTT: one publisher sends QoS 1 messages back to back; the time is until ``/stats`` counts
every sample learned (acknowledged once in the WAL, ``mqtt_receive_maximum`` in flight).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import paho.mqtt.client as paho
from paho.mqtt import __version__ as paho_version
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_common import write_section  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402
from tests.service.daemon import Daemon  # noqa: E402

HEADING = "## MQTT vs HTTP learn throughput"
DIM, CLASSES, WINDOW = 1280, 10, 64
# (transport, samples per message, concurrency: HTTP client threads or MQTT publishers,
# messages as a multiple of --messages for one-sample messages)
SCENARIOS = [
    ("http", 1, 1, 1.0),
    ("http", 1, 8, 1.0),
    ("mqtt", 1, 1, 1.0),
    ("http", 32, 1, 0.125),
    ("http", 32, 8, 0.125),
    ("mqtt", 32, 1, 0.125),
]


def bodies(count: int, per_message: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for _ in range(count):
        samples = []
        for _ in range(per_message):
            z = rng.standard_normal(DIM).astype("<f4")
            samples.append(
                {
                    "features": {"dtype": "float32", "shape": [DIM], "data": z.tobytes()},
                    "label": f"class-{int(rng.integers(CLASSES))}",
                    "id": uuid.uuid4().hex,
                }
            )
        out.append(msgpack.packb({"samples": samples}))
    return out


def learned(url: str) -> int:
    n: int = httpx.get(f"{url}/stats", timeout=10).json()["samples_learned"]
    return n


def over_http(url: str, messages: list[bytes], threads: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    headers = {"content-type": "application/msgpack"}

    def run(part: list[bytes]) -> None:
        with httpx.Client(timeout=30) as client:
            for body in part:
                start = time.perf_counter()
                client.post(f"{url}/learn", content=body, headers=headers).raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - start)

    workers = [threading.Thread(target=run, args=(messages[i::threads],)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start, latencies


def over_mqtt(url: str, port: int, topic: str, messages: list[bytes], samples: int) -> float:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(WINDOW)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        target = learned(url) + samples
        start = time.perf_counter()
        for body in messages:
            client.publish(topic, body, qos=1)
        wait_for(lambda: learned(url) >= target, timeout=300, poll=0.02)
        return time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for(check: Callable[[], bool], timeout: float = 60.0, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s")
        time.sleep(poll)


def measure(base_messages: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        with Mosquitto(root / "broker") as broker:
            env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECL_")}
            env.update(
                EDGECL_BACKBONE="identity",
                EDGECL_LATENT_DIM=str(DIM),
                EDGECL_STRATEGY__NAME="ncm",
                EDGECL_LOG_LEVEL="warning",
                EDGECL_MQTT_HOST="127.0.0.1",
                EDGECL_MQTT_PORT=str(broker.port),
                EDGECL_MQTT_DEVICE_ID="bench",
                EDGECL_MQTT_RECEIVE_MAXIMUM=str(WINDOW),
                EDGECL_PROBE_SHARE="0",  # every acknowledged sample is learned and counted
            )
            with Daemon(root / "data", env) as daemon:
                wait_for(lambda: httpx.get(f"{daemon.url}/metrics").status_code == 200)
                time.sleep(1.0)  # let the MQTT client connect and subscribe
                for transport, per_message, threads, share in SCENARIOS:
                    count = max(int(base_messages * share), 8 * threads)
                    messages = bodies(count, per_message, rng)
                    warm = bodies(4, per_message, rng)
                    samples = count * per_message
                    row: dict[str, Any] = {
                        "transport": transport,
                        "per_message": per_message,
                        "threads": threads,
                        "messages": count,
                    }
                    if transport == "http":
                        over_http(daemon.url, warm, 1)
                        seconds, latencies = over_http(daemon.url, messages, threads)
                        cuts = statistics.quantiles(latencies, n=100)
                        row["p50_ms"], row["p99_ms"] = cuts[49] * 1000, cuts[98] * 1000
                    else:
                        topic = "edgecl/bench/learn"
                        over_mqtt(daemon.url, broker.port, topic, warm, 4 * per_message)
                        seconds = over_mqtt(daemon.url, broker.port, topic, messages, samples)
                    row["samples_per_s"] = samples / seconds
                    row["messages_per_s"] = count / seconds
                    rows.append(row)
                    print(row, flush=True)
    return rows


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} logical cores, {platform.machine()}, Python "
        f"{platform.python_version()}, paho-mqtt {paho_version}"
        f"; load average at start {load}"
    )


def section(rows: list[dict[str, Any]], where: str, base_messages: int) -> str:
    lines = [
        HEADING,
        "",
        f"Command: `python benchmarks/mqtt_vs_http.py --messages {base_messages}`",
        "",
        f"Machine: {where}. Broker: Debian mosquitto 2 on 127.0.0.1, persistence on.",
        "",
        "One `edgecl serve` process (identity backbone, ncm, class-balanced int8 store, WAL "
        "fsync `always`, queue 64, micro-batches up to 64 samples) learns from both transports "
        "in the same run. Each sample is a 1280-d float32 latent as a packed msgpack array "
        "(5 KiB), with an id and one of ten labels; both transports carry the same msgpack "
        "bodies and go through the same schema, runtime and WAL. *HTTP*: each client thread "
        "posts and waits for its reply, which comes once the samples are in the WAL. *MQTT*: "
        "one publisher sends QoS 1 messages back to back; the daemon acknowledges each once its "
        "samples are in the WAL, with up to 64 messages in flight, and the time runs until "
        "`/stats` counts every sample learned. The clients and the broker run on the same "
        "cores as the daemon. Timings on a machine shared with other work vary between runs.",
        "",
        "How to read it: the WAL's fsync sets the pace of one-sample messages. An HTTP client "
        "waits for each reply, so it gets one fsync per request unless several clients share a "
        "micro-batch; MQTT keeps up to 64 messages in flight, so the writer batches them and "
        "one fsync acknowledges many. With 32 samples per message both transports fill the "
        "writer's 64-sample micro-batches, so the gap closes, and which one leads varies from "
        "run to run on this machine.",
        "",
        "| transport | samples/message | clients | messages | samples/s | messages/s "
        "| HTTP p50 ms | HTTP p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        p50 = f"{r['p50_ms']:.1f}" if "p50_ms" in r else ""
        p99 = f"{r['p99_ms']:.1f}" if "p99_ms" in r else ""
        lines.append(
            f"| {r['transport'].upper()} | {r['per_message']} | {r['threads']} | "
            f"{r['messages']} | {r['samples_per_s']:.0f} | {r['messages_per_s']:.0f} | "
            f"{p50} | {p99} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages",
        type=int,
        default=2000,
        help="one-sample messages per scenario "
        "(32-sample scenarios send an eighth as many messages)",
    )
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    where = machine()
    rows = measure(args.messages)
    write_section(args.output, HEADING, section(rows, where, args.messages))
    print(f"wrote {HEADING!r} in {args.output}")


if __name__ == "__main__":
    main()
