"""``edgecl store``: look at the daemon's replay memory, and move it to a new backbone."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from service.settings import load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("store", help="inspect or re-embed the daemon's replay memory")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    reembed = actions.add_parser(
        "reembed",
        help="move a data dir's model to the configured backbone (store encoding lz4)",
        description="After the backbone changed (rebuilt, another cut or model), embed the raw "
        "images the replay store keeps (encoding lz4) and those in the write-ahead log through "
        "the configured backbone, train a new head of the same strategy on them, and write a "
        "checkpoint the daemon starts from. Stop the daemon first. What the old head learned "
        "from samples no longer in memory is lost; the probe set starts again.",
    )
    info = actions.add_parser(
        "info", help="print what the newest checkpoint holds (JSON): backbone, store, classes"
    )
    for p in (reembed, info):
        p.add_argument("--config", type=Path, metavar="FILE", help="YAML settings file")
        p.add_argument("--data-dir", type=Path, help="state directory (default ./edgecl-data)")
    reembed.set_defaults(run=run_reembed)
    info.set_defaults(run=run_info)


def run_reembed(args: argparse.Namespace) -> int:
    from edgecl.backbones import BackboneChangedError, check_same
    from service.bootstrap import build_runtime
    from service.errors import StorageUnavailableError

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings(args.config, data_dir=args.data_dir)
    if not any((settings.data_dir / part).is_dir() for part in ("checkpoints", "wal")):
        raise ValueError(f"{settings.data_dir} holds no model to re-embed")
    start = time.perf_counter()
    runtime = build_runtime(settings)  # takes the data dir's lock: the daemon must be stopped
    wal = runtime.wal
    try:
        saved = runtime.latest_checkpoint()
        if saved is None and (wal is None or wal.last_seq == 0):
            raise ValueError(f"{settings.data_dir} holds no model to re-embed")
        if saved is not None:
            try:
                check_same(saved["learner"]["backbone"], runtime.learner.backbone.spec())
            except BackboneChangedError:
                pass
            else:
                sys.stdout.write("the model already uses the configured backbone: nothing to do\n")
                return 0
        held = None if saved is None else _describe(saved["learner"], 0)["store"]
        stored = 0 if held is None else held["items"]
        try:
            done = runtime.reembed()
        except StorageUnavailableError:
            raise ValueError(
                "the new checkpoint could not be written (see the log above)"
            ) from None
    finally:
        runtime.stop()
    learner = runtime.learner
    store = learner.store
    sys.stdout.write(
        f"re-embedded {stored} stored images and {done.replayed} WAL samples "
        f"through the configured backbone; the store holds {0 if store is None else len(store)}"
        f" images of {len(learner.labels)} classes, model version {learner.model_version}; "
        f"{done.skipped} WAL samples had no raw image and were left out "
        f"({time.perf_counter() - start:.1f} s)\n"
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from service.checkpoints import Checkpoints

    settings = load_settings(args.config, data_dir=args.data_dir)
    loaded = Checkpoints(
        settings.data_dir / "checkpoints", keep=settings.durability.checkpoint_keep
    )
    latest = loaded.load_latest() if (settings.data_dir / "checkpoints").is_dir() else None
    if latest is None:
        raise ValueError(f"{settings.data_dir} holds no checkpoint")
    state, seq = latest
    sys.stdout.write(json.dumps(_describe(state["learner"], seq), indent=2) + "\n")
    return 0


def _describe(learner: dict[str, Any], seq: int) -> dict[str, Any]:
    from edgecl import replay
    from edgecl.backbones import describe

    out: dict[str, Any] = {
        "wal_seq": seq,
        "backbone": describe(learner["backbone"]),
        "strategy": learner["strategy"]["name"],
        "classes": [str(label) for label in learner["labels"]["labels"]],
        "samples_learned": learner["samples_learned"],
        "model_version": learner["model_version"],
        "store": None,
    }
    saved = learner["store"]
    if saved is not None:
        store = replay.create(saved["name"], **saved["options"])
        store.load_state_dict(saved["state"])
        out["store"] = {
            "kind": saved["name"],
            "holds": getattr(store, "holds", "latents"),
            "items": len(store),
            "bytes": store.nbytes,
            "max_bytes": store.max_bytes,
        }
    return out
