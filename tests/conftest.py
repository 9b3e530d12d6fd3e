"""Session fixtures shared across test packages.

``backbone_manifest`` builds the int8 EfficientNet-Lite0 backbone (with its fp32 model kept
for comparisons) once per session, in pytest's cache folder under a key made of everything
the build depends on (build code, calibration images, package versions), so a rerun with
nothing changed reuses it; a fresh checkout (CI) builds it once, in about 10-20 s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib import metadata
from pathlib import Path

import pytest

# One BLAS thread per process. On a loaded 2-core machine OpenBLAS's spinning worker threads
# made BLAS-heavy tests (slda on 784-d pixels) tens of times slower. pytest imports this
# file before collection imports numpy; daemon subprocesses inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_BUILD_SOURCES = ("build.py", "quantize.py", "preprocess.py", "onnx.py")
_PACKAGES = ("torch", "onnx", "onnxruntime", "numpy", "pillow", "efficientnet-lite-pytorch")


def _build_key() -> str:
    import edgecl.backbones as backbones
    from edgecl.backbones.build import calibration_files, default_calibration_dir

    h = hashlib.sha256()
    package = Path(backbones.__file__).parent
    for name in _BUILD_SOURCES:
        h.update((package / name).read_bytes())
    with default_calibration_dir() as folder:
        for f in calibration_files(folder):
            h.update(f.name.encode() + f.read_bytes())
    for name in _PACKAGES:
        h.update(f"{name}={metadata.version(name)}".encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def backbone_manifest(request: pytest.FixtureRequest) -> Path:
    """Manifest of the default (``pooled``) build, with ``model.fp32.onnx`` kept."""
    pytest.importorskip("torch", reason="building the backbone needs the build extra")
    from edgecl.backbones.build import build_dir, ensure_backbone

    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    if cache is None:
        root = request.getfixturevalue("tmp_path_factory").mktemp("backbone")
    else:
        folder = cache.mkdir("edgecl-backbone")
        root = folder / _build_key()
        for old in folder.iterdir():
            if old != root:  # builds of older code or calibration sets
                shutil.rmtree(old, ignore_errors=True)
    manifest = build_dir(root, "pooled") / "manifest.json"
    if not (manifest.parent / "model.fp32.onnx").exists():
        manifest.unlink(missing_ok=True)
    return ensure_backbone(root, "pooled", keep_fp32=True)
