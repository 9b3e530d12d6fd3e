"""``edgecl backbone build``: export and int8-quantize EfficientNet-Lite0 into the data dir."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from edgecl.backbones.build import CUTS, build_backbone, build_dir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("backbone", help="build the frozen int8 backbone")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="export EfficientNet-Lite0 below the latent cut to ONNX and quantize it to int8",
        description="Export the ImageNet-pretrained EfficientNet-Lite0 below the latent cut to "
        "ONNX, quantize it to int8 (static, QDQ, per-channel) on calibration images and write "
        "it with a manifest to BACKBONE_DIR/efficientnet-lite0-<cut>/. Needs the build extra "
        "(torch); works offline. An existing build for the cut is replaced.",
    )
    build.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("EDGECL_DATA_DIR", "edgecl-data")),
        help="state directory (default $EDGECL_DATA_DIR or ./edgecl-data)",
    )
    build.add_argument(
        "--backbone-dir",
        type=Path,
        default=os.environ.get("EDGECL_BACKBONE_DIR"),
        help="folder of backbone builds (default $EDGECL_BACKBONE_DIR or DATA_DIR/backbone)",
    )
    build.add_argument(
        "--cut",
        default="pooled",
        metavar="CUT",
        help="latent cut: 'pooled' (1280-d, default) or blockK, K in 0..15 (the layers above "
        "are saved as a trainable torch module)",
    )
    build.add_argument(
        "--calibration",
        type=Path,
        metavar="DIR",
        help="folder of calibration images (default: the set that ships with edgecl)",
    )
    build.add_argument(
        "--keep-fp32", action="store_true", help="also keep the fp32 ONNX model (for comparison)"
    )
    build.set_defaults(run=run_build)
    install = actions.add_parser(
        "install",
        help="copy the prebuilt default backbone from the package into the backbone folder",
        description="Copy the int8 EfficientNet-Lite0 (pooled cut) that ships prebuilt in the "
        "package into BACKBONE_DIR/efficientnet-lite0-pooled/, unless an intact build is "
        "already there (what the daemon does on first start). Needs no torch.",
    )
    for flag in ("--data-dir", "--backbone-dir"):
        action = next(a for a in build._actions if flag in a.option_strings)
        install.add_argument(flag, type=Path, default=action.default, help=action.help)
    install.set_defaults(run=run_install)


def run_install(args: argparse.Namespace) -> int:
    from edgecl.backbones.build import ensure_backbone

    root = Path(args.backbone_dir) if args.backbone_dir else args.data_dir / "backbone"
    manifest = ensure_backbone(root)
    sys.stdout.write(f"backbone ready: {manifest}\n")
    return 0


def run_build(args: argparse.Namespace) -> int:
    if args.cut not in CUTS:
        raise ValueError(f"unknown cut {args.cut!r}; choose 'pooled' or block0..block15")
    root = Path(args.backbone_dir) if args.backbone_dir else args.data_dir / "backbone"
    start = time.perf_counter()
    try:
        manifest = build_backbone(
            build_dir(root, args.cut),
            cut=args.cut,
            calibration_dir=args.calibration,
            keep_fp32=args.keep_fp32,
        )
    except RuntimeError as exc:
        sys.stderr.write(f"edgecl: error: {exc}\n")
        return 2
    elapsed = time.perf_counter() - start
    from edgecl.backbones.onnx import read_manifest

    info = read_manifest(manifest)
    model = info["model"]
    sys.stdout.write(
        f"built {info['name']} in {elapsed:.1f} s: {manifest}\n"
        f"  model {model['file']} {model['bytes'] / 1e6:.2f} MB sha256 {model['sha256']}\n"
        f"  latent shape {tuple(info['latent_shape'])}, "
        f"{info['quantization']['calibration']['images']} calibration images\n"
    )
    if info["top"] is not None:
        sys.stdout.write(
            f"  trainable top: {info['top']['file']} ({len(info['top']['layers'])} layers)\n"
        )
    return 0
