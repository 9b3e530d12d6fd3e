"""The strategy benchmark on the committed fixture: streams, recipes, report, cache, CLI."""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecl.bench import cl, recipes, report, streams
from edgecl.bench.latents import LatentCache
from edgecl.bench.streams import SPLIT_FASHION, ClassIncrementalStream, Latents
from edgecl.datasets import Split, load_fixture
from edgecl.types import AnyArray
from service.__main__ import main


def pooled(split: Split) -> Latents:
    """Small latents for speed: 4x4 average pooling of the 28x28 pixels (49 values), scaled
    to 0..6 like the backbone's ReLU6 features."""
    x = split.images.reshape(len(split.images), 7, 4, 7, 4).mean(axis=(2, 4)) * (6.0 / 255.0)
    return Latents(x.reshape(len(x), 49).astype(np.float32), split.labels)


@pytest.fixture(scope="module")
def stream() -> ClassIncrementalStream:
    train, test = load_fixture()
    return ClassIncrementalStream(pooled(train), pooled(test), SPLIT_FASHION)


def test_the_stream_is_class_incremental_in_order(stream: ClassIncrementalStream) -> None:
    experiences = stream.experiences()
    assert [sorted(set(e.y.tolist())) for e in experiences] == [list(c) for c in SPLIT_FASHION]
    assert sum(len(e) for e in experiences) == len(stream.train)
    assert len(stream.test_seen(4)) == len(stream.test)
    # Classes are mixed within an experience, in a seeded order.
    assert experiences[0].y[:20].tolist() != sorted(experiences[0].y[:20].tolist())
    again = ClassIncrementalStream(stream.train, stream.test, SPLIT_FASHION).experiences()
    np.testing.assert_array_equal(again[2].y, experiences[2].y)


def test_every_issue_strategy_has_a_recipe() -> None:
    wanted = {"naive", "latent_replay", "cwr_star", "ar1", "exstream", "gdumb", "slda", "ncm"}
    assert set(recipes.RECIPES) == wanted
    for bad in ("nope", "ncm@float32", "gdumb@float8", "gdumb:epochs"):
        with pytest.raises(ValueError):
            recipes.parse_spec(bad)


def test_replay_and_memory_beat_naive_fine_tuning(stream: ClassIncrementalStream) -> None:
    results = {}
    for spec in ("naive", "latent_replay", "gdumb", "ncm", "exstream:replay_size=100"):
        recipe = recipes.parse_spec(spec)
        if recipe.strategy == "exstream":
            recipe = replace(recipe, batch=10)  # one sample at a time is slow for a test
        results[recipe.strategy] = cl.run(recipe, stream, memory_items=100)
    for r in results.values():
        assert len(r.accuracies) == 5 and all(0.0 <= a <= 1.0 for a in r.accuracies)
        assert r.samples == len(stream.train) and r.learn_seconds > 0
    naive = results["naive"].final
    assert naive < 0.35  # it forgets: mostly the last two classes are right
    for name in ("latent_replay", "gdumb", "ncm", "exstream"):
        assert results[name].final > naive + 0.2, name
    # After experience i, one accuracy per experience so far; naive forgets the most.
    for r in results.values():
        assert [len(row) for row in r.by_experience] == [1, 2, 3, 4, 5]
    assert results["naive"].forgetting > 0.5 and results["naive"].bwt < -0.5
    for name in ("latent_replay", "gdumb", "ncm"):
        assert results[name].forgetting < results["naive"].forgetting, name
    gdumb = results["gdumb"]
    assert gdumb.store == "class_balanced" and gdumb.items == 100
    assert gdumb.bytes_per_item == 49 + 4 + 8  # int8 codes, scale, label
    assert results["exstream"].store == "exstream"


def test_store_encodings_and_the_ar1_recipe(stream: ClassIncrementalStream) -> None:
    f32 = cl.run(recipes.parse_spec("gdumb@float32"), stream, memory_items=100)
    assert f32.items == 100 and f32.bytes_per_item == 49 * 4 + 8
    spec = "gdumb@pq:store.warmup=200:store.subvectors=7"  # 7 codes of 7 values per item
    pq = cl.run(recipes.parse_spec(spec), stream, memory_items=100)
    assert pq.store == "pq(class_balanced)" and pq.items > 100
    assert pq.store_bytes <= cl.store_budget("class_balanced", "int8", (49,), 100)
    # AR1 on pooled latents with one random hidden layer standing in for a build's top.
    recipe = recipes.parse_spec("ar1:hidden=16:epochs=1:replay_size=50:lr=0.05")
    ar1 = cl.run(replace(recipe, cut="pooled", batch=100), stream, memory_items=100)
    assert ar1.store == "latent_replay" and ar1.items == 100 and len(ar1.accuracies) == 5


def test_joint_bound_learns_every_class(stream: ClassIncrementalStream) -> None:
    result = cl.joint(stream, epochs=5)
    assert len(result.accuracies) == 5 and result.final > 0.6


@pytest.mark.parametrize(
    ("final", "words"),
    [
        (0.65, "`ncm` ends 15.0 points above the joint bound."),
        (0.35, "`ncm` ends 15.0 points below the joint bound."),
        (0.5, "`ncm` ends level with the joint bound."),
    ],
)
def test_comparison_with_the_joint_bound_says_above_or_below(final: float, words: str) -> None:
    ncm = cl.Result("ncm", [0.9, final], learn_seconds=1.0, samples=10)
    bound = cl.Result("joint (offline)", [0.9, 0.5], learn_seconds=1.0, samples=10)
    assert words in report.comparisons([ncm, bound])


def test_report_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Other\n\nkeep me\n\n## Last\n\nme too\n")
    result = cl.Result("ncm", [0.9, 0.8], learn_seconds=1.0, samples=10)
    report.write_section(path, report.table([result], 2))
    report.write_section(path, "first line\n\n" + report.table([result], 2))
    text = path.read_text()
    assert text.count(report.HEADING) == 1 and "first line" in text
    assert "keep me" in text and "me too" in text
    # Written in the middle, the next section still follows after a blank line.
    path.write_text(f"# B\n\n{report.HEADING}\n\nold\n\n## Next\n\nkept\n")
    report.write_section(path, "new")
    assert path.read_text() == f"# B\n\n{report.HEADING}\n\nnew\n\n## Next\n\nkept\n"
    # Hand-written notes at the end of the section survive a new table.
    notes = "### Notes\n\n- by hand\n"
    path.write_text(f"# B\n\n{report.HEADING}\n\nold\n\n{notes}\n## Next\n\nkept\n")
    report.write_section(path, "new")
    expected = f"# B\n\n{report.HEADING}\n\nnew\n\n{notes}\n## Next\n\nkept\n"
    assert path.read_text() == expected


def test_latent_cache_embeds_each_chunk_once(tmp_path: Path) -> None:
    calls: list[int] = []

    def embed(images: AnyArray) -> AnyArray:
        calls.append(len(images))
        return images.reshape(len(images), -1).astype(np.float32)

    images = np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2)
    cache = LatentCache(tmp_path, "toy", embed, chunk=4)
    z = cache.latents("train", images, np.array([9, 1]))
    np.testing.assert_array_equal(z, images[[9, 1]].reshape(2, 4))
    assert calls == [4, 2]  # chunks 0 and 2 only
    cache.latents("train", images, np.arange(10))
    assert calls == [4, 2, 4]  # only chunk 1 was missing
    with pytest.raises(ValueError, match="out of range"):
        cache.latents("train", images, np.array([10]))
    # What it holds is recorded only when that changes: a shared cache is not rewritten.
    cache.write_meta({"cut": "pooled"})
    meta = tmp_path / "toy" / "meta.json"
    os.utime(meta, ns=(0, 0))
    cache.write_meta({"cut": "pooled"})
    assert meta.stat().st_mtime_ns == 0
    cache.write_meta({"cut": "block14"})
    assert json.loads(meta.read_text()) == {"cut": "block14"}


def test_the_bench_command_writes_its_section(
    tmp_path: Path, stream: ClassIncrementalStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.commands import bench

    def fake_latents(*args: Any, **kwargs: Any) -> tuple[Latents, Latents, Path]:
        return stream.train, stream.test, tmp_path / "manifest.json"

    monkeypatch.setattr(bench, "fashion_latents", fake_latents)
    out = tmp_path / "BENCHMARKS.md"
    argv = ["bench", "cl", "--strategies", "naive,ncm", "--memory-items", "50"]
    assert main([*argv, "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    text = out.read_text()
    assert report.HEADING in text and "`naive`" in text and "`joint (offline)`" in text
    assert "--memory-items 50" in text
    assert main(["bench", "cl", "--strategies", "nope"]) == 2
    # Per strategy: ECE of its calibrated probabilities, near- and far-novel AUROC.
    header = next(line for line in text.splitlines() if line.startswith("| strategy"))
    assert header.split(" | ")[-5:-2] == ["ECE", "near AUROC", "far AUROC"]
    for name in ("naive", "ncm"):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        ece, near, far = (float(v) for v in row.split(" | ")[-5:-2])
        assert 0.0 <= ece <= 1.0 and 0.0 <= near <= 1.0 and 0.0 <= far <= 1.0
    joint = next(line for line in text.splitlines() if line.startswith("| `joint"))
    assert joint.split(" | ")[-5:-2] == ["–", "–", "–"]  # no learner, no probe
    assert main([*argv, "--probe-share", "0", "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    assert "near AUROC" not in out.read_text() and "--probe-share 0" in out.read_text()
    assert main([*argv, "--probe-share", "1", "--data-dir", str(tmp_path)]) == 2
    # Another stream writes its own section and leaves Split-Fashion-MNIST's alone.
    assert main([*argv, "--stream", "digits", "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    text = out.read_text()
    assert report.HEADING in text and "## Digits, class-incremental (strategies)" in text


def test_the_openset_bench_pools_folds_so_every_image_is_tested_once(
    tmp_path: Path, stream: ClassIncrementalStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgecl.bench import openset

    def fixture_latents(*args: Any, **kwargs: Any) -> tuple[Latents, Latents, Path]:
        return stream.train, stream.test, tmp_path / "manifest.json"

    monkeypatch.setattr(streams, "fashion_latents", fixture_latents)
    out = tmp_path / "BENCHMARKS.md"
    argv = ["bench", "openset", "--stream", "digits", "--strategies", "ncm", "--folds", "3"]
    assert main([*argv, "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    text = out.read_text()
    assert openset.HEADING.format(name="digits, 3 folds pooled") in text
    images = len(stream.train) + len(stream.test)
    assert "the test predictions pooled; T and probe items" in text and f"({images})" in text
    row = next(line for line in text.splitlines() if line.startswith("| `ncm`"))
    cells = row.split(" | ")
    ece, floor = float(cells[3].strip("*")), float(cells[4])
    assert 0.0 < floor < 0.2 and 0.0 <= ece < 0.5
    assert main([*argv[:-1], "1", "--data-dir", str(tmp_path)]) == 2


def test_describe_names_the_batches() -> None:
    args = argparse.Namespace(memory_items=1500, limit_train=None, limit_test=None)
    from service.commands.bench import describe

    train = Latents(np.zeros((4, 2), np.float32), np.arange(4) % 2)
    text = describe(
        args,
        [recipes.parse_spec("exstream")],
        ClassIncrementalStream(train, train, ((0, 1),)),
        "here",
    )
    assert "`exstream` 1" in text and "Machine: here." in text
    assert "images of Fashion-MNIST" in text
    args.stream = "digits"
    text = describe(
        args, [recipes.parse_spec("slda")], ClassIncrementalStream(train, train, ((0, 1),)), ""
    )
    assert "--stream digits" in text and "handwritten digits" in text


def test_nic_forgetting_and_bwt_leave_the_last_class_out() -> None:
    from edgecl.bench.nic import NicResult

    matrix = [{0: 0.9}, {0: 0.5, 1: 0.8}, {0: 0.6, 1: 0.7, 2: 0.9}]
    forget, bwt = NicResult("x", matrix, 0.7, 1.0, 10).forgetting_and_bwt([0, 1, 2], 1)
    assert forget == pytest.approx(0.2) and bwt == pytest.approx(-0.2)


def test_the_nic_bench_covers_every_strategy_on_a_small_stream(
    tmp_path: Path, stream: ClassIncrementalStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgecl.bench import nic

    def fake_latents(*args: Any, **kwargs: Any) -> tuple[Latents, Latents, Path]:
        return stream.train, stream.test, tmp_path / "manifest.json"

    def fake_cut(data_dir: Path, cut: str, rows: AnyArray) -> tuple[Latents, Latents, Path]:
        assert cut == "block14" and np.all(np.diff(rows) > 0)
        return Latents(stream.train.z[rows], stream.train.y[rows]), stream.test, Path("m.json")

    monkeypatch.setattr(nic, "fashion_latents", fake_latents)
    monkeypatch.setattr(nic, "cut_latents", fake_cut)
    assert len(nic.DEFAULT.split(",")) == len(recipes.RECIPES)
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# B\n\n{nic.HEADING}\n\nold\n\n### Notes\n\n- by hand\n\n## Next\n\nkept\n")
    # AR1 without a build: one random hidden layer stands in for the layers above the cut.
    ar1 = "ar1:top=None:hidden=8:epochs=1:replay_size=20"
    strategies = nic.DEFAULT.replace("ar1", ar1)
    small = ["--batches", "8", "--batch-size", "10", "--initial-per-class", "20"]
    argv = ["--strategies", strategies, *small, "--memory-items", "50", "--out", str(out)]
    assert nic.main(argv) == 0
    text = out.read_text()
    assert "old" not in text and "- by hand" in text and text.endswith("## Next\n\nkept\n")
    assert f"--strategies {strategies}" in text
    assert "`ar1` learns from latents of the same samples at the `block14` cut" in text
    number = r"-?\d+\.\d%"
    for name in recipes.RECIPES:
        row = rf"^\| `{name}` \| {number} \| {number} \| [+-]\d+\.\d% \| \d+ \|$"
        assert re.search(row, text, re.M), name
    assert re.search(rf"^\| joint \(offline\) \| {number} \| \| \| \|$", text, re.M)


def test_digits_stream_splits_sklearns_bundled_digits() -> None:
    pytest.importorskip("sklearn")
    from edgecl.datasets import load_digits

    train, test = load_digits()
    assert len(train.labels) + len(test.labels) == 1797 and len(test.labels) == 450
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (8, 8)
    assert train.images.max() == 255 and set(test.labels.tolist()) == set(range(10))


def test_the_tuned_bench_runs_ar1_at_its_cut_with_the_builds_top(
    tmp_path: Path, stream: ClassIncrementalStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bench tuned`` gives a block-cut recipe latents of the same images at its cut and
    the build's layers above it; the other strategies keep the pooled latents."""
    from edgecl.bench import run_cl
    from tests.edgecl.test_ar1 import fake_build

    manifest = fake_build(tmp_path)
    project = np.random.default_rng(0).uniform(size=(49, 192 * 2 * 2)).astype(np.float32) / 8
    asked: list[str] = []

    def at_cut(data: Latents) -> Latents:
        return Latents((data.z @ project).reshape(len(data), 192, 2, 2).astype(np.float32), data.y)

    def fake_latents(cache: Path, backbones: Path, cut: str, **kwargs: Any) -> Any:
        asked.append(cut)
        n = kwargs["limit_train"]
        train = Latents(stream.train.z[:n], stream.train.y[:n])
        if cut == "pooled":
            return train, stream.test, tmp_path / "pooled.json"
        return at_cut(train), at_cut(stream.test), manifest

    monkeypatch.setattr(run_cl, "fashion_latents", fake_latents)
    out = tmp_path / "BENCHMARKS.md"
    spec = "ar1:epochs=1:replay_size=20:lr=0.01"
    argv = ["bench", "tuned", "--strategies", f"naive,{spec}", "--lr-grid", "0.01"]
    argv += ["--memory-items", "50", "--no-joint", "--limit-train", "500"]
    assert main([*argv, "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    assert asked == ["pooled", "block14"]
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{spec}`"))
    assert "latents at `block14`" in row
    assert "--limit-train 500" in text
