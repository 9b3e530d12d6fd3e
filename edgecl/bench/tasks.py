"""``edgecl bench tasks``: the stream as tasks, one per experience (task-incremental).

Every strategy learns each experience as its task (named by its index). After each
experience, on the test images of the classes seen so far: accuracy with the task given
(a task-unaware strategy's probabilities masked to the task's classes), and, for those
that can answer without a task, accuracy over every seen class with the share of images
whose inferred task is right. The joint bound: ``edgecl bench cl``'s, masked likewise.

    python -m edgecl.bench.tasks --stream digits --strategies naive,supsup --out FILE
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.bench.cl import Result, build, by_experience, joint_heads
from edgecl.bench.recipes import TASK_AWARE, Recipe, parse_spec
from edgecl.bench.report import machine, pct, write_section
from edgecl.bench.streams import SPLIT_FASHION, STREAMS, ClassIncrementalStream, Latents
from edgecl.learner import Learner
from edgecl.task_book import infer, task_aware
from edgecl.types import FloatArray, IntArray

log = logging.getLogger("edgecl.bench")

DEFAULT = "naive,latent_replay," + ",".join(
    "multi_head:infer_task=entropy" if n == "multi_head" else n for n in TASK_AWARE
)


@dataclass
class TaskRun:
    """One strategy on the stream: with the task given, and without it (None when the
    strategy needs a task); ``inference``: per experience, the share of test images whose
    inferred task is right (empty when it infers none)."""

    given: Result
    free: Result | None
    inference: list[float]
    task_bytes: str
    masked: bool


def task_of(y: IntArray, stream: ClassIncrementalStream) -> IntArray:
    """The experience (task) that holds each class of ``y``.

    >>> s = ClassIncrementalStream(Latents(np.zeros((4, 1), np.float32), np.arange(4)),
    ...                            Latents(np.zeros((4, 1), np.float32), np.arange(4)),
    ...                            ((0, 1), (2, 3)))
    >>> task_of(np.array([3, 0, 2]), s).tolist()
    [1, 0, 1]
    """
    owner = {c: t for t, classes in enumerate(stream.classes) for c in classes}
    return np.asarray([owner[int(c)] for c in y], dtype=np.int64)


def mask_to_tasks(
    p: FloatArray, columns: list[Any], t: IntArray, stream: ClassIncrementalStream
) -> FloatArray:
    """``p`` with mass only on the classes of each row's task (``columns``: the label of
    each column)."""
    allowed = np.array(
        [[c in stream.classes[task] for c in columns] for task in range(len(stream.classes))]
    )
    return np.where(allowed[t], p, -1.0).astype(np.float32)


def label(recipe: Recipe) -> str:
    """The recipe's name, with how it infers tasks (which changes its row without one)."""
    infers = recipe.options.get("infer_task")
    return recipe.label + (f":infer_task={infers}" if infers else "")


def run(recipe: Recipe, stream: ClassIncrementalStream, *, memory_items: int, seed: int) -> TaskRun:
    """Learn ``stream`` once, each experience as its task; evaluate after each."""
    if recipe.strategy == "joint":
        return joint(stream, seed=seed)
    learner = build(recipe, stream.latent_shape, memory_items, seed)
    head = task_aware(learner.strategy)
    free_ok = head is None or head.task_mode == "inferred"
    given = Result(label(recipe), [], 0.0, 0)
    free = Result(label(recipe), [], 0.0, 0) if free_ok else None
    inference: list[float] = []
    for i, exp in enumerate(stream.experiences()):
        start = time.perf_counter()
        for s in range(0, len(exp), recipe.batch):
            y = exp.y[s : s + recipe.batch]
            learner.learn_latents(exp.z[s : s + recipe.batch], y.tolist(), tasks=[str(i)] * len(y))
        given.learn_seconds += time.perf_counter() - start
        given.samples += len(exp)
        test = stream.test_seen(i)
        t = task_of(test.y, stream)
        names = [str(task) for task in t.tolist()]
        if head is not None:
            p = learner.predict_proba_latents(test.z, names)
        else:
            p = mask_to_tasks(
                learner.predict_proba_latents(test.z), learner.labels.labels, t, stream
            )
        _score(given, learner, p, test, stream, i)
        if free is not None:
            p = learner.predict_proba_latents(test.z)
            _score(free, learner, p, test, stream, i)
            if head is not None:
                guessed = infer(learner.strategy, learner.tasks, test.z, p)
                truth = np.asarray([learner.tasks.names.index(n) for n in names])
                inference.append(float(np.mean(guessed == truth)))
        log.info("%s: experience %d accuracy %.4f (task given)", recipe.label, i + 1, given.final)
    if free is not None:
        free.learn_seconds, free.samples = given.learn_seconds, given.samples
    if head is not None:
        per_task, shared = head.task_nbytes(), getattr(head, "shared_nbytes", lambda: 0)()
        held = list(per_task.values()) or [0]
        nbytes = f"{np.mean(held):.0f} ({min(held)}–{max(held)}) + {shared} shared"
    else:
        nbytes = f"store {learner.store.nbytes} in all" if learner.store is not None else "0"
    return TaskRun(given, free, inference, nbytes, masked=head is None)


def _score(
    result: Result,
    learner: Learner,
    p: FloatArray,
    test: Latents,
    stream: ClassIncrementalStream,
    i: int,
) -> None:
    predicted = np.array([learner.labels.decode(int(c)) for c in p.argmax(axis=1)])
    correct = predicted == test.y
    result.accuracies.append(float(np.mean(correct)))
    result.by_experience.append(by_experience(correct, test.y, stream, i))


def joint(stream: ClassIncrementalStream, *, epochs: int = 32, seed: int = 0) -> TaskRun:
    """The offline bound (``edgecl bench cl``'s joint head, retrained on every sample seen
    after each experience), scored with the task given (masked) and without it."""
    given = Result("joint (offline)", [], 0.0, 0, notes=[f"{epochs} epochs, lr 0.05"])
    free = Result("joint (offline)", [], 0.0, 0, notes=list(given.notes))
    for i, head, _ in joint_heads(stream, epochs=epochs, seed=seed):
        test = stream.test_seen(i)
        p = head.predict_proba_many(test.z)
        t = task_of(test.y, stream)
        for result, q in ((free, p), (given, mask_to_tasks(p, list(range(p.shape[1])), t, stream))):
            correct = q.argmax(axis=1) == test.y
            result.accuracies.append(float(np.mean(correct)))
            result.by_experience.append(by_experience(correct, test.y, stream, i))
    return TaskRun(given, free, [], "—", masked=True)


def table(runs: list[TaskRun], experiences: int, given: bool) -> str:
    """The task-given table (every run) or the task-not-given one (runs that answer
    without a task), with the task-inference accuracy.

    >>> r = Result("x", [0.9, 0.8], 2.0, 100, by_experience=[[0.9], [0.7, 0.9]])
    >>> print(table([TaskRun(r, r, [1.0, 0.5], "40", False)], 2, given=False))
    | strategy | exp 1 | exp 2 (final) | forgetting | BWT | task inferred right | bytes per task | learn samples/s | notes |
    | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
    | `x` | 90.0 | **80.0** | 20.0 | -20.0 | 50.0 | 40 | 50 |  |
    """  # noqa: E501
    head = [f"exp {i + 1}" for i in range(experiences)]
    head[-1] += " (final)"
    head += ["forgetting", "BWT"] + ([] if given else ["task inferred right"])
    head += ["bytes per task", "learn samples/s"]
    lines = [
        "| strategy | " + " | ".join(head) + " | notes |",
        "| --- | " + " | ".join("---:" for _ in head) + " | --- |",
    ]
    for run in runs:
        r = run.given if given else run.free
        if r is None:
            continue
        cells = [pct(a) for a in r.accuracies]
        cells[-1] = f"**{cells[-1]}**"
        cells += [pct(r.forgetting), f"{100 * r.bwt:+.1f}"]
        if not given:
            cells.append(pct(run.inference[-1]) if run.inference else "—")
        joint_row = r.label.startswith("joint")
        cells += [run.task_bytes, "—" if joint_row else f"{r.samples_per_s:.0f}"]
        notes = list(r.notes)
        if given and run.masked:
            notes.insert(0, "task-unaware: probabilities masked to the task's classes")
        lines.append(f"| `{r.label}` | " + " | ".join(cells) + " | " + "; ".join(notes) + " |")
    return "\n".join(lines)


def heading(stream: str) -> str:
    """The section's heading.

    >>> heading("digits")
    '## Digits, task-incremental (task given, and inferred)'
    """
    name = "Split-Fashion-MNIST" if stream == "fashion" else stream.capitalize()
    return f"## {name}, task-incremental (task given, and inferred)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark (also those of ``edgecl bench tasks``)."""
    p.add_argument("--strategies", default=DEFAULT, help="comma-separated name[:option=value]")
    p.add_argument("--stream", choices=sorted(STREAMS), default="fashion")
    p.add_argument("--memory-items", type=int, default=1500, help="replay memory, in latents")
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--data-dir", type=Path, default=Path("edgecl-data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-joint", action="store_true", help="skip the offline upper bound")
    p.add_argument("--out", type=Path, default=None, help="write the section into this file")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecl.bench.tasks", description=__doc__)
    add_arguments(p)
    return run_args(p.parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    from edgecl.bench.streams import fashion_latents

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipes = [parse_spec(s) for s in args.strategies.split(",") if s.strip()]
    if args.memory_items < 1:
        raise ValueError("--memory-items must be at least 1")
    train, test, _ = fashion_latents(
        args.data_dir / "bench",
        args.data_dir / "backbone",
        "pooled",
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        stream=args.stream,
    )
    stream = ClassIncrementalStream(train, test, SPLIT_FASHION, args.seed)
    started = machine()
    runs = []
    for recipe in recipes:
        t = time.perf_counter()
        runs.append(run(recipe, stream, memory_items=args.memory_items, seed=args.seed))
        accs = [round(a, 4) for a in runs[-1].given.accuracies]
        print(f"{recipe.label}: {accs} ({time.perf_counter() - t:.0f} s)", flush=True)  # noqa: T201
    if not args.no_joint and not any(r.strategy == "joint" for r in recipes):
        runs.append(joint(stream, seed=args.seed))
    body = describe(args, recipes, stream, started)
    n = len(SPLIT_FASHION)
    body += "\n\n### Task given\n\n" + table(runs, n, given=True)
    body += "\n\n### Task not given (class-incremental)\n\n" + table(runs, n, given=False)
    print(body, flush=True)  # noqa: T201
    if args.out is not None:
        write_section(args.out, body, heading(args.stream))
    return 0


def describe(
    args: argparse.Namespace, recipes: list[Recipe], stream: ClassIncrementalStream, started: str
) -> str:
    """The paragraph above the tables: command, machine, data, what the columns mean."""
    command = f"edgecl bench tasks --stream {args.stream} --strategies "
    command += ",".join(label(r) for r in recipes)
    for flag in ("limit_train", "limit_test"):
        if getattr(args, flag) is not None:
            command += f" --{flag.replace('_', '-')} {getattr(args, flag)}"
    batches = ", ".join(f"`{label(r)}` {r.batch}" for r in recipes)
    return (
        f"Command: `OPENBLAS_NUM_THREADS=1 nice -n 5 {command} --out BENCHMARKS.md`\n\n"
        f"Machine: {started}.\n\n"
        f"Stream: {len(stream.train)} training and {len(stream.test)} test images of "
        f"{STREAMS[args.stream]} as 5 experiences of 2 new classes, experience *k* being "
        "task *k*, each sample learned once with its task, pooled int8 EfficientNet-Lite0 "
        "latents. Columns *exp k*: accuracy (%) on the test images of every class seen "
        "after experience *k*. *Task given*: each test image's task is given (a "
        "task-unaware strategy's probabilities masked to the task's classes); *task not "
        "given*: chosen among every seen class, the task inferred by the strategies that "
        "can (*task inferred right*: share of the test images whose inferred task is "
        "theirs, after the last experience). *Bytes per task*: mean (range) of the strategy's "
        "`task_nbytes()` (masks, columns, embeddings, heads) + the bytes all tasks share "
        "(fixed or shared weights); for a task-unaware one its "
        f"replay store's bytes. Default hyper-parameters; batch sizes: {batches}; replay "
        f"memory {args.memory_items} int8 latents."
    )


if __name__ == "__main__":
    raise SystemExit(main())
