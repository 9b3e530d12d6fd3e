"""Does /stats tell the truth? The probe's accuracy as /stats shows it, beside the accuracy
the same daemon scores on a separate test set, at the end of a class-incremental stream
and right after a retrain, for every strategy; prequential beside them for contrast.

    OPENBLAS_NUM_THREADS=1 nice -n 5 python -m benchmarks.probe_truth \
        [--stream fashion|digits] [--limit-train 10000] [--seeds 1] [--data-dir edgecl-data]

Each strategy runs in its own daemon with the default settings (store, probe: 5% held
back, re-scored every 500 samples, /stats never more than probe_rescore_s stale), on the
identity backbone fed the int8 backbone's pooled latents of the stream's images (built
and cached under ``--data-dir``). The stream is Split-Fashion-MNIST's five experiences of
two classes (the digits stream: the same class pairs), sent in requests of 64 samples.
With ``--seeds N`` each seed is a run of its own (the samples' order within experiences
and the daemon's seed, hence which samples the probe holds), and a second table sets the
gaps' spread beside the one binomial sampling alone would give. ``--resplit`` pools the
stream's training and test images and draws a test set of the same size at random for
each seed: the digits stream's own test split (every fourth image of scikit-learn's
order) is easier than its training images, so a probe drawn from the stream scores below
it by more than sampling explains.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.bench_common import MSGPACK, daemon_env, features_body, machine, write_section
from edgecl.bench.streams import SPLIT_FASHION, ClassIncrementalStream, Latents, fashion_latents
from tests.service.daemon import Daemon

HEADING = "## Probe accuracy against a separate test set, through the daemon"
STRATEGIES = ("slda", "ncm", "latent_replay", "cwr_star", "naive", "gdumb")


def test_accuracy(http: httpx.Client, z: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    right = 0
    for start in range(0, len(y), 256):
        rows = z[start : start + 256]
        body = {"samples": [{"features": r.tolist()} for r in rows], "top_k": 1}
        reply = http.post("/predict", json=body)
        reply.raise_for_status()
        labels = [p["label"] for p in reply.json()["predictions"]]
        right += sum(lab == f"c{k}" for lab, k in zip(labels, y[start : start + 256], strict=True))
    return right / len(y)


def figures(http: httpx.Client, stream: ClassIncrementalStream, wait_s: float) -> dict[str, Any]:
    time.sleep(wait_s)  # /stats shows the probe at most probe_rescore_s stale: read past it
    stats = http.get("/stats").json()
    test = stream.test_seen(len(stream.classes) - 1)
    probe = stats["probe"] or {}
    return {
        "probe": probe.get("accuracy"),
        "margin": probe.get("margin"),
        "n_test": len(test),
        "age_s": probe.get("age_s"),
        "status": probe.get("status"),
        "held": probe.get("held"),
        "test": test_accuracy(http, test.z, test.y),
        "prequential": stats["prequential"]["accuracy"],
        "window": stats["prequential"]["window_accuracy"],
    }


def run(strategy: str, stream: ClassIncrementalStream, root: Path) -> list[dict[str, Any]]:
    env = daemon_env(
        None,
        strategy__name=strategy,
        latent_dim=str(stream.latent_shape[0]),
        max_wait_ms="2",
        seed=str(stream.seed),
    )
    rows = []
    with (
        Daemon(root / f"{strategy}-{stream.seed}" / "data", env) as daemon,
        httpx.Client(base_url=daemon.url, timeout=300) as http,
    ):
        sent = 0
        for experience in stream.experiences():
            for start in range(0, len(experience), 64):
                z = experience.z[start : start + 64]
                labels = [f"c{k}" for k in experience.y[start : start + 64]]
                ids = [f"s{sent + i}" for i in range(len(labels))]
                body = features_body(z, labels, ids)
                reply = http.post("/learn", content=body, headers={"content-type": MSGPACK})
                reply.raise_for_status()
                sent += len(labels)
        end = {"strategy": strategy, "seed": stream.seed, "when": "end of stream"}
        rows.append({**end, **figures(http, stream, 2.5)})
        if strategy == "gdumb":
            job = http.post("/retrain").json()["job"]
            while http.get(f"/retrain/{job}").json()["state"] == "running":
                time.sleep(0.5)
            after = {**end, "when": "after /retrain"}
            rows.append({**after, **figures(http, stream, 0)})
    return rows


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def section(
    rows: list[dict[str, Any]], args: argparse.Namespace, started: str, heading: str
) -> str:
    command = "OPENBLAS_NUM_THREADS=1 nice -n 5 python -m benchmarks.probe_truth " + shlex.join(
        a for a in sys.argv[1:] if not a.startswith("--data-dir") and a != str(args.data_dir)
    )
    drawn = ""
    if args.resplit and rows:
        drawn = (
            " Test set: for each seed, the stream's training and test images pooled and "
            f"{rows[0]['n_test']} of them drawn at random (seeded), the rest the stream."
        )
    out = [
        heading,
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {started}",
        "",
        f"Stream: {args.stream}, {args.train_images} training images as int8 "
        "pooled latents, five experiences of two classes; the test set is the stream's "
        "test images of all ten classes. Default daemon settings per strategy. *Probe*: "
        "/stats `probe.accuracy` (read 2.5 s after the stream, past `probe_rescore_s`); "
        "*test*: accuracy of /predict on the test set at the same moment; *prequential*: "
        "overall and windowed test-then-train accuracy, for contrast." + drawn,
        "",
        "| strategy | seed | when | probe % | ± margin | test % | probe − test | held "
        "| prequential % | window % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        gap = None if r["probe"] is None else r["probe"] - r["test"]
        out.append(
            f"| `{r['strategy']}` | {r['seed']} | {r['when']} | {pct(r['probe'])} | "
            f"{pct(r['margin'])} | {pct(r['test'])} | "
            f"{'–' if gap is None else f'{100 * gap:+.1f}'} | {r['held']} | "
            f"{pct(r['prequential'])} | {pct(r['window'])} |"
        )
    if len({r["seed"] for r in rows}) > 1:
        out += ["", *spread(rows)]
    return "\n".join(out) + "\n"


def resplit(train: Latents, test: Latents, seed: int) -> tuple[Latents, Latents]:
    """Train and test pooled, a test set of the same size drawn again (seeded)."""
    z, y = np.concatenate([train.z, test.z]), np.concatenate([train.y, test.y])
    order = np.random.default_rng([seed, 16]).permutation(len(y))
    fit, held = order[: len(train)], order[len(train) :]
    return Latents(z[fit], y[fit]), Latents(z[held], y[held])


def spread(rows: list[dict[str, Any]]) -> list[str]:
    """Per strategy and moment over the seeds: the gaps' mean, standard deviation and
    largest size, beside the standard deviation binomial sampling alone gives a probe of
    ``held`` items and a test set of ``n_test`` (both drawn from the same classes)."""
    out = [
        "Over the seeds: *sampling SD*: sqrt(p(1 − p)(1/held + 1/test)), the spread of "
        "probe − test that drawing the probe's items and the test images alone gives at "
        "accuracy p; *within 3*: seeds whose gap is at most 3 points; *within margin*: "
        "seeds whose gap is within the 95% margin /stats gave beside the probe figure.",
        "",
        "| strategy | when | seeds | mean gap | SD of gap | sampling SD | largest gap "
        "| within 3 | mean ± margin | within margin |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["probe"] is not None:
            groups.setdefault((r["strategy"], r["when"]), []).append(r)
    for (strategy, when), group in groups.items():
        gaps = np.array([r["probe"] - r["test"] for r in group])
        p = np.mean([r["test"] for r in group])
        sampling = np.sqrt(p * (1 - p) * np.mean([1 / r["held"] + 1 / r["n_test"] for r in group]))
        margin = np.mean([r["margin"] for r in group if r["margin"] is not None])
        sd = f"{100 * gaps.std(ddof=1):.1f}" if len(gaps) > 1 else "–"
        out.append(
            f"| `{strategy}` | {when} | {len(gaps)} | {100 * gaps.mean():+.1f} | {sd} | "
            f"{100 * sampling:.1f} | {100 * np.abs(gaps).max():.1f} | "
            f"{int(np.sum(np.abs(gaps) <= 0.03))}/{len(gaps)} | {100 * margin:.1f} | "
            f"{sum(abs(r['probe'] - r['test']) <= r['margin'] for r in group)}/{len(gaps)} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--stream", choices=["fashion", "digits"], default="fashion")
    parser.add_argument("--limit-train", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=1, help="runs, seeds 0..N-1")
    parser.add_argument("--resplit", action="store_true", help="draw the test set at random")
    parser.add_argument("--data-dir", type=Path, default=Path("edgecl-data"))
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    started = machine()
    train, test, _ = fashion_latents(
        args.data_dir / "bench",
        args.data_dir / "backbone",
        "pooled",
        limit_train=args.limit_train,
        stream=args.stream,
    )
    args.train_images = len(train)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecl-probe-") as tmp:
        for seed in range(args.seeds):
            pair = resplit(train, test, seed) if args.resplit else (train, test)
            stream = ClassIncrementalStream(*pair, SPLIT_FASHION, seed=seed)
            for strategy in args.strategies:
                rows += run(strategy, stream, Path(tmp))
                print(rows[-1], flush=True)
    heading = HEADING if args.stream == "fashion" else f"{HEADING} ({args.stream})"
    heading += ", test drawn at random" if args.resplit else ""
    write_section(args.out, heading, section(rows, args, started, heading))


if __name__ == "__main__":
    main()
