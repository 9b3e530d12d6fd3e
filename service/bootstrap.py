"""Settings → a runtime: the backbone, the strategy, the store, the WAL, checkpoints, probe."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from edgecl import Learner, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.cpus import usable_cpus
from edgecl.probe import ProbeSet
from edgecl.protocols import Backbone
from edgecl.replay import holds_inputs
from service.budget import Budget
from service.embed_batching import EmbedBatcher
from service.inputs import Embedder
from service.observability.metrics import Telemetry
from service.runtime import LearnerRuntime
from service.settings import PAPER, Settings


def embed_sizing(settings: Settings, cores: int | None = None) -> tuple[int, int | None]:
    """(lanes, ONNX Runtime threads per run; None: its default) for ``cores`` cores.

    Unset, there is a lane per core and each run keeps to its own core: several runs of one
    thread cost less CPU per image than fewer runs of several threads, which wait on each
    other and, beside other lanes, contend for the same cores (see BENCHMARKS.md). Without
    embed batching every request runs the backbone itself, at ONNX Runtime's default, and
    at most ``lanes`` of them at once.

    >>> embed_sizing(Settings(), cores=4), embed_sizing(Settings(embed_lanes=2), cores=6)
    ((4, 1), (2, 3))
    >>> embed_sizing(Settings(embed_batching=False), cores=4)
    (4, None)
    """
    cores = usable_cpus() if cores is None else cores
    lanes = settings.embed_lanes or cores
    threads = settings.backbone_threads
    if threads is None and settings.embed_batching:
        threads = max(1, cores // lanes)
    return lanes, threads


def make_backbone(settings: Settings) -> tuple[Backbone, Literal["image", "vector"]]:
    """The backbone and what it eats; the int8 ONNX one is installed into the data dir once
    and self-checked at every start (``edgecl.backbones.selfcheck``)."""
    if settings.backbone == "identity":
        return IdentityBackbone(settings.latent_dim), "vector"
    from edgecl.backbones.build import ensure_backbone
    from edgecl.backbones.selfcheck import open_checked

    manifest = ensure_backbone(settings.backbone_path, settings.backbone_cut)
    backbone = open_checked(
        manifest,
        settings.backbone_check_min_cosine,
        providers=settings.backbone_providers,
        intra_op_threads=embed_sizing(settings)[1],
    )
    return backbone, "image"


def strategy_options(settings: Settings) -> dict[str, Any]:
    """The strategy's options; ``ar1`` on a block cut of the int8 backbone trains the
    layers above that cut unless told otherwise (its ``top`` is the build's manifest).

    >>> s = Settings(strategy={"name": "ar1"}, backbone_cut="block14", data_dir="d")
    >>> strategy_options(s)["top"]
    'd/backbone/efficientnet-lite0-block14/manifest.json'
    """
    options = dict(settings.strategy.options)
    cut = settings.backbone_cut
    if settings.strategy.name == "ar1" and settings.backbone == "onnx" and cut != "pooled":
        from edgecl.backbones.build import build_dir

        options.setdefault("top", str(build_dir(settings.backbone_path, cut) / "manifest.json"))
    return options


def make_learner(settings: Settings) -> tuple[Learner, Literal["image", "vector"]]:
    """The learner (backbone, strategy, replay store, probe) and what its backbone eats."""
    backbone, pixels = make_backbone(settings)
    strategy = strategies.create(settings.strategy.name, **strategy_options(settings))
    store = None
    kind, options = settings.store.resolve(settings.strategy.name, backbone.latent_shape)
    if kind is not None:
        store = replay.create(kind, seed=settings.seed, **options)
    if holds_inputs(store) and pixels != "image":
        raise ValueError(
            "a store with encoding lz4 keeps raw images, which needs the image backbone "
            "(backbone: onnx), not the identity backbone"
        )
    learner = Learner(
        backbone,
        strategy,
        store,
        seed=settings.seed,
        window=settings.prequential_window,
        probe=make_probe(settings),
    )
    learner.calibration = replace(
        learner.calibration,
        acceptance=settings.novelty_acceptance,
        override=settings.novelty_threshold,
    )
    return learner, pixels


def make_probe(settings: Settings) -> ProbeSet | None:
    """The probe set, or None when its share is 0."""
    probe = settings.probe
    if probe.share == 0:
        return None
    return ProbeSet(probe.share, probe.max_bytes, probe.every, seed=settings.seed)


def build_runtime(settings: Settings, *, durable: bool = True) -> LearnerRuntime:
    """A runtime as the settings describe it; ``durable`` adds the WAL and checkpoints
    under the data dir (``wal/``, ``checkpoints/``).

    >>> rt = build_runtime(Settings(backbone="identity", latent_dim=3), durable=False)
    >>> rt.learner.latent_shape, rt.wal is None, rt.learner.probe is not None
    ((3,), True, True)
    """
    learner, pixels = make_learner(settings)
    wal = checkpoints = None
    if durable:
        from service.checkpoints import Checkpoints
        from service.wal import WriteAheadLog

        d = settings.durability
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        wal = WriteAheadLog(
            settings.data_dir / "wal",
            fsync=d.wal_fsync,
            group_ms=d.wal_group_ms,
            segment_bytes=d.wal_segment_bytes,
            exclusive=True,
        )
        checkpoints = Checkpoints(settings.data_dir / "checkpoints", keep=d.checkpoint_keep)
    return LearnerRuntime(
        learner,
        queue=settings.queue,
        durability=settings.durability,
        wal=wal,
        checkpoints=checkpoints,
        max_classes=settings.max_classes,
        probe_rescore_s=settings.probe.rescore_s,
        keep_saved_store=settings.store.kind == PAPER,
        embedder=make_embedder(settings, learner.backbone, pixels),
        observer=Telemetry(),
    )


def make_embedder(
    settings: Settings, backbone: Backbone, pixels: Literal["image", "vector"]
) -> Embedder:
    """What turns request inputs into latents: bounded decoding, and concurrent requests'
    images batched into shared backbone runs, predictions first (unless ``embed_batching`` is
    off; then at most ``embed_lanes`` requests run the backbone at once)."""
    batcher, lanes = None, embed_sizing(settings)[0]
    if settings.embed_batching:
        batcher = EmbedBatcher(
            backbone.embed,
            lanes=lanes,
            max_batch=settings.embed_max_batch,
            learn_chunk=settings.embed_learn_chunk,
            learn_lag_ms=settings.embed_learn_lag_ms,
        )
    return Embedder(
        backbone,
        pixels,
        budget=Budget(settings.decode_pixels),
        max_request_pixels=settings.max_pixels_per_request,
        batcher=batcher,
        max_runs=None if batcher is not None else lanes,
    )
