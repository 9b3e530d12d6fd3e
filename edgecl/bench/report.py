"""The benchmark's Markdown: one table, written into its own section of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

from edgecl import cpus
from edgecl.bench.cl import Result

HEADING = "## Split-Fashion-MNIST, class-incremental (strategies)"


#: The instruction-set flags that change NumPy's and ONNX Runtime's kernels (x86, then Arm).
SPEED_FLAGS = (
    "avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_int8 asimd asimddp i8mm sve"
).split()


def cpu_flags() -> str:
    """The :data:`SPEED_FLAGS` this CPU has, as ``/proc/cpuinfo`` lists them."""
    have = cpus.cpu_flags()
    if not have:
        return "unknown"
    return " ".join(f for f in SPEED_FLAGS if f in have) or "none of " + " ".join(SPEED_FLAGS)


def machine() -> str:
    """One line on where the numbers come from."""
    import numpy as np

    parts = [
        f"{platform.machine()}, {os.cpu_count()} logical cores",
        f"CPU flags {cpu_flags()}",
        f"Python {platform.python_version()}",
        f"NumPy {np.__version__}",
    ]
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    parts.append(f"OPENBLAS_NUM_THREADS={blas}" if blas else "BLAS threads: default")
    if hasattr(os, "getloadavg"):
        parts.append("load average at start " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    return "; ".join(parts)


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def table(results: Sequence[Result], experiences: int) -> str:
    """Rows: accuracy (%) on the seen classes after each experience, average forgetting and
    backward transfer (points), memory and speed; ECE and open-set AUROC (near: mean over
    the cuts) when any row has them.

    >>> r = Result("ncm", [0.9, 0.8], 2.0, 100, by_experience=[[0.9], [0.7, 0.9]])
    >>> print(table([r], 2))
    | strategy | memory | exp 1 | exp 2 (final) | forgetting | BWT | learn samples/s | notes |
    | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |
    | `ncm` | none | 90.0 | **80.0** | 20.0 | -20.0 | 50 |  |
    >>> r.open = (0.031, 0.88, float("nan"))  # ECE, near and far AUROC
    >>> print(table([r], 2).splitlines()[2])
    | `ncm` | none | 90.0 | **80.0** | 20.0 | -20.0 | 0.031 | 0.880 | – | 50 |  |
    """
    head = [f"exp {i + 1}" for i in range(experiences)]
    head[-1] += " (final)"
    head += ["forgetting", "BWT"]
    measured = any(r.open is not None for r in results)  # calibration and open set
    head += ["ECE", "near AUROC", "far AUROC"] if measured else []
    lines = [
        "| strategy | memory | " + " | ".join(head) + " | learn samples/s | notes |",
        "| --- | --- | " + " | ".join("---:" for _ in head) + " | ---: | --- |",
    ]
    for r in results:
        if r.store is None:
            memory = f"none; its own {r.store_bytes} B" if r.store_bytes else "none"
        else:
            memory = f"`{r.store}`: {r.items} items, {r.bytes_per_item:.0f} B/item"
        accs = [pct(a) for a in r.accuracies]
        accs[-1] = f"**{accs[-1]}**"
        if r.by_experience:
            accs += [pct(r.forgetting), f"{100 * r.bwt:+.1f}"]
        else:
            accs += ["", ""]
        if measured:
            accs += ["–"] * 3 if r.open is None else [_figure(v) for v in r.open]
        speed = "—" if r.label.startswith("joint") else f"{r.samples_per_s:.0f}"
        cells = [f"`{r.label}`", memory, *accs, speed, "; ".join(r.notes)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(value: float) -> str:
    return "–" if value != value else f"{value:.3f}"  # NaN: not measured


def comparisons(results: Sequence[Result]) -> list[str]:
    """Sentences comparing rows the table holds: encodings, and SLDA against the bound.

    >>> rows = [Result("gdumb", [0.80], 1.0, 1, "class_balanced", 10, 1000),
    ...         Result("gdumb@float32", [0.81], 1.0, 1, "class_balanced", 10, 4000)]
    >>> comparisons(rows)
    ['`gdumb` int8 vs `gdumb@float32`: -1.0 points at 25% of the bytes per item.']
    """
    by_label = {r.label: r for r in results}
    out = []
    for r in results:
        if "@" in r.label:
            continue
        for encoding in ("float32", "pq"):
            other = by_label.get(f"{r.label}@{encoding}")
            if other is None or not other.items or not r.items:
                continue
            delta = 100 * (r.final - other.final)
            if encoding == "float32":
                share = r.bytes_per_item / other.bytes_per_item
                out.append(
                    f"`{r.label}` int8 vs `{other.label}`: {delta:+.1f} points at "
                    f"{100 * share:.0f}% of the bytes per item."
                )
            else:
                out.append(
                    f"`{other.label}` holds {other.items} items in the bytes of {r.items} int8 "
                    f"items: {-delta:+.1f} points over `{r.label}`."
                )
    bound = next((r for r in results if r.label.startswith("joint")), None)
    if bound is not None:
        for r in results:
            if not r.label.startswith("joint") and r.label in ("slda", "ncm"):
                out.append(f"`{r.label}` ends {_versus(100 * (r.final - bound.final))}.")
    return out


def _versus(points: float) -> str:
    """Where a final accuracy sits against the joint bound, in words (on a small stream the
    one-pass offline bound can end below a streaming head).

    >>> _versus(-3.21), _versus(15.0)
    ('3.2 points below the joint bound', '15.0 points above the joint bound')
    >>> _versus(0.01)
    'level with the joint bound'
    """
    if round(points, 1) == 0:
        return "level with the joint bound"
    return f"{abs(points):.1f} points {'above' if points > 0 else 'below'} the joint bound"


NOTES = "### Notes"


def write_section(path: str | os.PathLike[str], body: str, heading: str = HEADING) -> None:
    """Put ``heading`` + ``body`` in ``path``, replacing only that section (read just now).

    A ``### Notes`` part of the old section (written by hand) is kept, after the new body.
    """
    p = Path(path)
    text = p.read_text() if p.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    notes = ""
    if found is not None and f"\n{NOTES}\n" in found.group(0):
        kept = found.group(0).split(f"\n{NOTES}\n", 1)[1].rstrip()
        notes = f"\n{NOTES}\n{kept}\n"
    section = f"{heading}\n\n{body.strip()}\n{notes}"
    if found is not None:
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    p.write_text(text)
