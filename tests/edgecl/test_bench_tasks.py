"""The task-incremental benchmark on a tiny synthetic stream: columns, masking of
task-unaware strategies, task inference for those that infer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecl.bench import tasks
from edgecl.bench.recipes import parse_spec
from edgecl.bench.streams import SPLIT_FASHION, ClassIncrementalStream, Latents
from service.__main__ import main


def blobs(n_per_class: int, seed: int) -> Latents:
    """Ten well-separated Gaussian classes in 16 dimensions, ReLU6-like (0..6)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).uniform(0, 6, size=(10, 16))
    y = np.repeat(np.arange(10), n_per_class)
    z = np.clip(centres[y] + rng.normal(scale=0.4, size=(len(y), 16)), 0, 6)
    return Latents(z.astype(np.float32), y)


@pytest.fixture(scope="module")
def stream() -> ClassIncrementalStream:
    return ClassIncrementalStream(blobs(40, 0), blobs(10, 1), SPLIT_FASHION)


def test_task_unaware_strategies_are_masked_to_the_task(stream: ClassIncrementalStream) -> None:
    run = tasks.run(parse_spec("naive"), stream, memory_items=50, seed=0)
    assert run.masked and run.free is not None and run.inference == []
    # Naive fine-tuning forgets the old classes when it must choose among all of them;
    # masked to the task's two classes it still tells them apart.
    assert run.given.final > run.free.final + 0.2
    assert run.given.forgetting < run.free.forgetting
    text = tasks.table([run], 5, given=True)
    assert "masked to the task's classes" in text


def test_replay_reports_its_store_bytes(stream: ClassIncrementalStream) -> None:
    run = tasks.run(parse_spec("latent_replay"), stream, memory_items=50, seed=0)
    assert run.task_bytes.startswith("store ") and int(run.task_bytes.split()[1]) > 0


def test_a_required_task_head_is_scored_only_with_the_task(stream: ClassIncrementalStream) -> None:
    run = tasks.run(parse_spec("pnn"), stream, memory_items=50, seed=0)
    assert run.free is None and not run.masked
    assert run.given.final > 0.9 and run.given.forgetting < 0.05
    assert int(run.task_bytes.split()[0]) > 0 and run.task_bytes.endswith(" shared")
    assert "`pnn`" not in tasks.table([run], 5, given=False)


@pytest.mark.parametrize("spec", ["supsup", "multi_head:infer_task=entropy"])
def test_inferring_strategies_report_the_inference_accuracy(
    stream: ClassIncrementalStream, spec: str
) -> None:
    run = tasks.run(parse_spec(spec), stream, memory_items=50, seed=0)
    assert run.free is not None and len(run.inference) == 5
    assert all(0.0 <= share <= 1.0 for share in run.inference)
    assert run.inference[0] == 1.0  # one task: nothing to infer
    assert run.inference[-1] > 0.2  # above chance (one in five) on separated classes
    row = next(line for line in tasks.table([run], 5, given=False).splitlines() if spec in line)
    assert f"{100 * run.inference[-1]:.1f}" in row


def test_the_command_writes_both_tables_with_the_columns(
    stream: ClassIncrementalStream, tmp_path: Path
) -> None:
    runs = [tasks.run(parse_spec(s), stream, memory_items=50, seed=0) for s in ("naive", "supsup")]
    runs.append(tasks.joint(stream, epochs=2))
    given, free = tasks.table(runs, 5, given=True), tasks.table(runs, 5, given=False)
    for text in (given, free):
        header = text.splitlines()[0]
        for column in ("exp 1", "exp 5 (final)", "forgetting", "BWT", "bytes per task"):
            assert column in header
        assert "learn samples/s" in header and "`joint (offline)`" in text
    assert "task inferred right" in free.splitlines()[0]
    assert "task inferred right" not in given.splitlines()[0]
    joint = runs[-1]
    assert joint.free is not None and joint.given.final >= joint.free.final


def test_the_cli_writes_its_section_and_refuses_a_bad_strategy(
    stream: ClassIncrementalStream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgecl.bench import streams

    def tiny_latents(*args: Any, **kwargs: Any) -> tuple[Latents, Latents, Path]:
        return stream.train, stream.test, tmp_path / "manifest.json"

    monkeypatch.setattr(streams, "fashion_latents", tiny_latents)  # the synthetic stream
    out = tmp_path / "BENCHMARKS.md"
    argv = ["bench", "tasks", "--strategies", "naive,supsup", "--memory-items", "50"]
    assert main([*argv, "--stream", "digits", "--out", str(out)]) == 0
    text = out.read_text()
    assert tasks.heading("digits") in text
    assert "### Task given" in text and "### Task not given (class-incremental)" in text
    assert "edgecl bench tasks --stream digits --strategies naive,supsup" in text
    assert "CPU flags" in text and "`joint (offline)`" in text
    assert main(["bench", "tasks", "--strategies", "nope"]) == 2
