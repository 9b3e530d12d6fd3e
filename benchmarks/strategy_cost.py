"""Per-sample cost of each head strategy on 1280-d latents, through the Learner.

Latents are random but structured like pooled CNN features: ten class prototypes, each
sample a noisy copy passed through a ReLU. For each strategy the learner first learns a
warm-up stream (every class seen), then it is timed on ``learn_one`` (which scores each
sample before learning it, as the daemon's prequential accuracy needs) and on
``predict_one``. "update only" times the strategy's own ``learn_many`` of one sample,
without the learner's test-then-train prediction.

Run from the repository root; it rewrites its section of BENCHMARKS.md::

    OPENBLAS_NUM_THREADS=1 python benchmarks/strategy_cost.py

One BLAS thread is the fair setting on a machine whose cores are busy with other work:
OpenBLAS threads that wait for a busy core make SLDA's solve several times slower.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from edgecl import Learner, codec, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.protocols import ReplayStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from benchmarks.bench_common import machine as common_machine  # noqa: E402
from benchmarks.bench_common import section_head, write_section  # noqa: E402

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
HEADING = "## Strategy cost on 1280-d latents (foundation)"
DIM, N_CLASSES = 1280, 10
STRATEGIES = (
    "slda",
    "slda:tolerance=1e-6",
    "ncm",
    "cwr_star",
    "latent_replay",
    "naive",
)


def make_latents(
    n: int, rng: np.random.Generator, every_class: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """ReLU of (class prototype + 16 shared noise factors + isotropic noise);
    ``every_class``: the first :data:`N_CLASSES` samples are one of each class."""
    fixed = np.random.default_rng(1234)
    base = fixed.normal(size=DIM)
    protos = base + 0.2 * fixed.normal(size=(N_CLASSES, DIM))
    factors = 0.1 * fixed.normal(size=(16, DIM))
    y = rng.integers(0, N_CLASSES, size=n)
    if every_class:
        y[:N_CLASSES] = np.arange(N_CLASSES)
    noise = rng.normal(size=(n, 16)) @ factors + rng.normal(size=(n, DIM))
    return np.maximum(protos[y] + noise, 0.0).astype(np.float32), y


def timed(fn: object, n: int, budget: float) -> tuple[int, float, list[float]]:
    """Call ``fn(i)`` for i < n or until ``budget`` seconds pass (at least 10 calls)."""
    assert callable(fn)
    laps: list[float] = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        laps.append(time.perf_counter() - t)
        if i >= 9 and time.perf_counter() - start > budget:
            break
    return len(laps), sum(laps), laps


def parse_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``"slda:tolerance=1e-6"`` to ``("slda", {"tolerance": 1e-06})``."""
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = ast.literal_eval(value)
    return name, options


def measure(spec: str, args: argparse.Namespace) -> dict[str, float]:
    name, options = parse_spec(spec)
    rng = np.random.default_rng(args.seed)
    # Every class in the warm-up: the timed streams must bring no class the heads lack.
    z_warm, y_warm = make_latents(args.warmup, rng, every_class=True)
    z, y = make_latents(args.n, rng)
    z_test, y_test = make_latents(1000, rng)
    strategy = strategies.create(name, **options)
    store: ReplayStore | None = None
    if strategy.replay_size:
        store = replay.create("class_balanced", max_bytes=args.store_mb * 2**20)
    learner = Learner(IdentityBackbone(DIM), strategy, store)
    for start in range(0, len(y_warm), 10):
        learner.learn_many(z_warm[start : start + 10], y_warm[start : start + 10].tolist())
    # Scored right after the warm-up, so every strategy has seen the same samples.
    accuracy = float(np.mean(np.array(learner.predict_many(z_test)) == y_test))
    head = copy.deepcopy(learner.strategy)
    idx = np.asarray(learner.labels.encode_many(y.tolist()), dtype=np.int64)
    n_up, t_up, _ = timed(lambda i: head.learn_many(z[i : i + 1], idx[i : i + 1]), args.n, 5)
    n_learn, t_learn, _ = timed(lambda i: learner.learn_one(z[i], int(y[i])), args.n, args.budget)
    learner.predict_one(z[0])  # SLDA: the precision after the last update
    n_pred, t_pred, laps = timed(lambda i: learner.predict_one(z_test[i]), 1000, args.budget)
    return {
        "learn": n_learn / t_learn,
        "learn_n": n_learn,
        "update": n_up / t_up,
        "predict": n_pred / t_pred,
        "predict_p50_ms": 1e3 * float(np.median(laps)),
        "state_kib": len(codec.packb(learner.strategy.state_dict())) / 1024,
        "accuracy": accuracy,
    }


def machine() -> str:
    """:func:`benchmarks.bench_common.machine` (CPU flags included), and the BLAS threads."""
    threads = next((os.environ[k] for k in BLAS_ENV if k in os.environ), None)
    return f"{common_machine()}, BLAS threads {threads or 'default'}"


def section(results: dict[str, dict[str, float]], command: str, where: str) -> str:
    rows = [
        "| strategy | learn_one /s | update only /s | predict_one /s "
        "| predict_one p50 ms | head state KiB | held-out accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        rows.append(
            f"| `{name}` | {r['learn']:.1f} | {r['update']:.1f} | {r['predict']:.0f} "
            f"| {r['predict_p50_ms']:.3f} | {r['state_kib']:.0f} | {r['accuracy']:.3f} |"
        )
    return "\n".join(
        [
            *section_head(HEADING, command, where),
            "Ten classes of random-but-structured 1280-d latents (ReLU of class "
            "prototypes around a shared base, plus 16 shared noise factors and isotropic "
            "noise), through `Learner` with `IdentityBackbone(1280)`, default options "
            "unless the row names some. "
            "`learn_one` includes the learner's test-then-train prediction of each sample "
            "before learning it (for SLDA one product with its kept 1280x1280 precision, "
            "reused by the update; see *`slda` learning speed*); *update only* is the "
            "strategy's own one-sample `learn_many` with no prediction between them. "
            "`latent_replay` replays from a class-balanced int8 store. *Held-out accuracy* "
            "is a sanity check on 1000 fresh samples right after the warm-up stream "
            "(the same samples for every strategy). Timings on a machine shared with "
            "other work vary by a factor of about two between runs. *Head state* is the "
            "strategy's msgpack state (SLDA: the upper triangle of the float64 covariance).",
            "",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        help="names, with options as name:key=value,key=value",
    )
    parser.add_argument("--n", type=int, default=2000, help="samples to time, at most")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per timing")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--store-mb", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    if args.warmup < N_CLASSES:
        parser.error(f"--warmup must be at least {N_CLASSES}: the warm-up shows every class")
    env = [f"{k}={os.environ[k]}" for k in BLAS_ENV if k in os.environ]
    command = shlex.join([*env, "python", "benchmarks/strategy_cost.py", *sys.argv[1:]])
    where = machine()
    results = {}
    for name in args.strategies:
        results[name] = measure(name, args)
        r = results[name]
        print(
            f"{name:28s} learn_one {r['learn']:9.1f}/s ({int(r['learn_n'])} samples)  "
            f"update {r['update']:9.1f}/s  predict_one {r['predict']:8.0f}/s  "
            f"acc {r['accuracy']:.3f}",
            flush=True,
        )
    write_section(args.output, HEADING, section(results, command, where))
    print(f"wrote {HEADING!r} in {args.output}")


if __name__ == "__main__":
    main()
