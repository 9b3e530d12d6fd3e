"""Rebuild the photos of edgecl/data/calibration from the packages that ship them.

    python scripts/calibration_photos.py SOURCES_DIR

SOURCES_DIR holds the unpacked packages (``dpkg-deb -x`` of Debian's
``lomiri-wallpapers-16.04``, and the wheels of scikit-image 0.26.0, scikit-learn and
matplotlib unzipped), in any layout: files are found by name. Each photo becomes square
224x224 crops (short side scaled to 224 with Lanczos, then left/centre/right or
top/centre/bottom), JPEG quality 90; LICENSES.md lists every source and its licence.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "edgecl" / "data" / "calibration"
SIZE = 224
#: (source file name, output stem, crops, held out): held-out photos are never calibrated on.
PHOTOS = [
    ("seeding_by_Clements_Engelhardt.jpg", "lomiri-seeding", 3, False),
    ("umang_by_Abhishek_Mudgal.jpg", "lomiri-umang", 3, False),
    ("sunset_by_Aitzol_Berasategi.jpg", "lomiri-sunset", 3, False),
    ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "lomiri-picos", 3, False),
    ("life_by_Aitzol_Berasategi.jpg", "lomiri-life", 3, False),
    ("friends_by_Aitzol_Berasategi.jpg", "lomiri-friends", 3, False),
    ("aitzgorri_by_Aitzol_Berasategi.jpg", "lomiri-aitzgorri", 3, False),
    ("Picture_1A_by_freespace.jpg", "lomiri-picture-1a", 3, False),
    ("china.jpg", "sklearn-china", 3, False),
    ("grace_hopper.jpg", "mpl-grace-hopper", 1, False),
    ("moon.png", "skimage-moon", 1, False),
    ("ihc.png", "skimage-ihc", 1, False),
    ("Wine_by_Jakkub_Mede.jpg", "lomiri-wine", 1, True),
    ("Picture_0B_by_freespace.jpg", "lomiri-picture-0b", 1, True),
    ("flower.jpg", "sklearn-flower", 1, True),
]


def crops(img: Image.Image, n: int) -> list[Image.Image]:
    scale = SIZE / min(img.size)
    w, h = max(SIZE, round(img.width * scale)), max(SIZE, round(img.height * scale))
    img = img.resize((w, h), Image.Resampling.LANCZOS)
    if n == 1:
        offsets = [0.5]
    else:
        offsets = [i / (n - 1) for i in range(n)]
    out = []
    for f in offsets:
        x, y = round((w - SIZE) * f), round((h - SIZE) * f)
        out.append(img.crop((x, y, x + SIZE, y + SIZE)))
    return out


def main() -> None:
    sources = Path(sys.argv[1])
    found = {p.name: p for p in sources.rglob("*") if p.is_file()}
    for name, stem, n, held in PHOTOS:
        with Image.open(found[name]) as img:
            mode = "L" if img.mode in ("L", "I;16", "I") else "RGB"
            parts = crops(img.convert(mode), n)
        folder = OUT / "heldout" if held else OUT
        for i, part in enumerate(parts):
            suffix = f"-{i}" if n > 1 else ""
            part.save(folder / f"photo-{stem}{suffix}.jpg", quality=90)


if __name__ == "__main__":
    main()
