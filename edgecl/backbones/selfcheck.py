"""Start-up self-check: does this CPU's int8 session give the latents the build measured?

ONNX Runtime runs int8 models with kernels chosen for the CPU at hand (x86 with or without
VNNI, Arm with or without dot product), and a kernel that saturates on some CPU family gives
silently wrong latents. A build therefore stores, beside its model, a few small photos
(never used for calibration) and their fp32 latents (``selfcheck.npz``). On start the
backbone embeds them and compares: below ``min_cosine`` it switches to the reference
session, the same model with ONNX Runtime's graph optimisations off (Q/DQ nodes run as
written, no fused int8 kernels), which keeps the model file, and so every learned state,
valid.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.backbones.onnx import OnnxBackbone, read_manifest, sha256_file
from edgecl.types import FloatArray, State

log = logging.getLogger(__name__)

REFERENCE_FILE = "selfcheck.npz"
#: Below this cosine (the lowest over the check's photos) the session is not trusted.
DEFAULT_MIN_COSINE = 0.95
#: The stored photos' side: small, since the backbone resizes them to its input anyway.
CHECK_SIZE = 112


def cosines(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise cosine similarity of two latent batches.

    >>> cosines(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])).tolist()
    [1.0]
    """
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    out: FloatArray = ((a * b).sum(axis=1) / np.maximum(den, 1e-12)).astype(np.float32)
    return out


def write_reference(folder: Path, fp32: OnnxBackbone, photos: list[bytes]) -> dict[str, Any]:
    """Store ``photos`` (shrunk to ``CHECK_SIZE``) and their ``fp32`` latents in ``folder``;
    returns the manifest entry."""
    images = fp32.prepare(photos)
    from PIL import Image

    small = np.stack(
        [
            np.asarray(
                Image.fromarray(im).resize((CHECK_SIZE, CHECK_SIZE), Image.Resampling.LANCZOS)
            )
            for im in images
        ]
    )
    path = folder / REFERENCE_FILE
    _save_npz(path, {"images": small, "latents": fp32.embed(small)})
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "images": len(small),
        "min_cosine": DEFAULT_MIN_COSINE,
    }


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def run_check(backbone: OnnxBackbone, manifest_path: str | os.PathLike[str]) -> State | None:
    """Cosines of ``backbone``'s latents against the build's fp32 ones (``None``: the build
    stored no reference)."""
    manifest = read_manifest(manifest_path)
    entry = manifest.get("selfcheck")
    if not entry:
        return None
    path = Path(manifest_path).parent / entry["file"]
    if not path.is_file() or sha256_file(path) != entry["sha256"]:
        raise ValueError(f"{path} is missing or does not match its manifest; rebuild the backbone")
    with np.load(path, allow_pickle=False) as data:
        images, reference = data["images"], data["latents"]
    # One image per run: ONNX Runtime's arena keeps the activations of the largest run, and
    # the check should not make the daemon hold a batch's worth at ready (about 30 MiB).
    z = np.concatenate([backbone.embed(images[i : i + 1]) for i in range(len(images))])
    sims = cosines(z, reference)
    return {
        "images": len(sims),
        "mean_cosine": round(float(sims.mean()), 4),
        "min_cosine": round(float(sims.min()), 4),
    }


def open_checked(
    manifest_path: str | os.PathLike[str],
    min_cosine: float = DEFAULT_MIN_COSINE,
    **options: Any,
) -> OnnxBackbone:
    """The build's backbone, self-checked; its ``check`` holds the result (plain data).

    ``check["session"]`` is ``"optimized"`` (ONNX Runtime's fused int8 kernels passed) or
    ``"reference"`` (they did not, graph optimisations are off); ``check["passed"]`` says
    whether the session serving now passed.
    """
    backbone = OnnxBackbone.from_manifest(manifest_path, **options)
    first = run_check(backbone, manifest_path)
    if first is None:
        log.warning("%s stores no self-check reference: latents not checked", manifest_path)
        return backbone
    check: State = {**first, "threshold": min_cosine, "session": "optimized"}
    check.update(reason=None, optimized=None)
    if first["min_cosine"] < min_cosine:
        reason = (
            f"int8 latents of this CPU's optimized session differ from fp32 (lowest cosine "
            f"{first['min_cosine']:.4f} < {min_cosine}): serving with graph optimisations off"
        )
        log.warning("backbone self-check: %s", reason)
        backbone = OnnxBackbone.from_manifest(
            manifest_path, **{**options, "graph_optimizations": False}
        )
        second = run_check(backbone, manifest_path) or first
        check = {**check, **second, "session": "reference", "optimized": first, "reason": reason}
    check["passed"] = check["min_cosine"] >= min_cosine
    if check["passed"]:
        log.info(
            "backbone self-check passed (%s session): cosine to fp32 mean %.4f, lowest %.4f",
            check["session"],
            check["mean_cosine"],
            check["min_cosine"],
        )
    else:
        log.error(
            "backbone self-check failed with graph optimisations off too (lowest cosine "
            "%.4f < %s): latents may be wrong on this CPU",
            check["min_cosine"],
            min_cosine,
        )
    backbone.check = check
    return backbone
