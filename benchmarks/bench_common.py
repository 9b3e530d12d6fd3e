"""Helpers shared by the benchmarks: the machine they ran on, daemon environment, the int8
backbone, percentiles, process memory and writing one section of BENCHMARKS.md.
"""

from __future__ import annotations

import io
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from edgecl.bench.report import cpu_flags

__all__ = [
    "MSGPACK",
    "backbone_dir",
    "cpu_flags",
    "daemon_env",
    "features_body",
    "latents",
    "machine",
    "machine_line",
    "pct",
    "png",
    "proc_status_mib",
    "rss_mib",
    "torch_loaded",
    "write_section",
]

MSGPACK = "application/msgpack"
BACKBONE_CACHE = Path(tempfile.gettempdir()) / "edgecl-bench-backbone"
N_CLASSES = 10  # classes of :func:`latents`


def machine() -> str:
    """CPU model, cores, speed flags, Python, NumPy and load average now."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} logical cores, {platform.machine()}, "
        f"CPU flags {cpu_flags()}, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, load average at start {load}"
    )


def command_line(module: str) -> str:
    """This run's command as a reader would type it: ``python -m module`` with its
    arguments, after the BLAS thread setting when one was made."""
    env = [f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"]
    env = env if "OPENBLAS_NUM_THREADS" in os.environ else []
    return shlex.join([*env, "python", "-m", module, *sys.argv[1:]])


def section_head(heading: str, command: str, where: str) -> list[str]:
    """A section's first lines: its heading, the command and the machine."""
    return [heading, "", f"Command: `{command}`", "", f"Machine: {where}.", ""]


def machine_line() -> str:
    """CPU, cores, Python, NumPy and load average now; the machine is shared."""
    return machine() + " (the machine is shared with other work)"


def backbone_dir(wanted: Path | None) -> Path:
    """A folder holding the built int8 backbone; builds it into a cache folder if needed."""
    folder = wanted if wanted is not None else BACKBONE_CACHE
    if not (folder / "efficientnet-lite0-pooled" / "manifest.json").exists():
        subprocess.run(
            [sys.executable, "-m", "service", "backbone", "build", "--backbone-dir", str(folder)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return folder


def daemon_env(backbone: Path | None, **settings: str) -> dict[str, str]:
    """The environment of a benchmark daemon: one BLAS thread, warnings only, the int8
    backbone in ``backbone`` (None: identity on 1280-d features), ``EDGECL_<NAME>`` overrides.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECL_")}
    env.update(OPENBLAS_NUM_THREADS="1", EDGECL_LOG_LEVEL="warning")
    if backbone is None:
        env.update(EDGECL_BACKBONE="identity", EDGECL_LATENT_DIM="1280")
    else:
        env.update(EDGECL_BACKBONE="onnx", EDGECL_BACKBONE_DIR=str(backbone))
    env.update({f"EDGECL_{name.upper()}": value for name, value in settings.items()})
    return env


def png(image: np.ndarray[Any, Any]) -> bytes:
    """PNG bytes of a uint8 grayscale image."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def latents(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray[Any, Any], list[str]]:
    """ReLU of class prototypes plus noise, like pooled CNN features: ``n`` rows of ``dim``
    values from :data:`N_CLASSES` classes named ``class-0`` and on."""
    protos = np.random.default_rng(1234).normal(size=(N_CLASSES, dim))
    y = rng.integers(0, N_CLASSES, size=n)
    z = np.maximum(protos[y] + rng.normal(size=(n, dim)), 0.0).astype(np.float32)
    return z, [f"class-{c}" for c in y]


def features_body(z: np.ndarray[Any, Any], labels: list[str], ids: list[str] | None) -> bytes:
    """A msgpack /learn body of packed float32 ``features`` rows."""
    samples: list[dict[str, Any]] = []
    for i, (row, label) in enumerate(zip(z, labels, strict=True)):
        sample: dict[str, Any] = {
            "features": {"dtype": "float32", "shape": [z.shape[1]], "data": row.tobytes()},
            "label": label,
        }
        if ids is not None:
            sample["id"] = ids[i]
        samples.append(sample)
    packed: bytes = msgpack.packb({"samples": samples})
    return packed


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


def rss_mib(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def proc_status_mib(pid: int, key: str) -> float:
    """A size line of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``, ...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def torch_loaded(pid: int) -> bool:
    """Whether libtorch is mapped into the process (``import torch`` happened)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace the section under ``heading`` (up to the next ``## ``), or append it.

    Re-reads the file right before writing: other scripts own other sections.
    """
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")
