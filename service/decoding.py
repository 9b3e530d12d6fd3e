"""Image bytes to pixels within a memory bound.

Each image is decoded alone and made small at once: a JPEG is decoded at a reduced scale
(Pillow's ``draft``), other formats are reduced right after decoding. PNG, WebP and BMP
can only be decoded whole (a lossless WebP costs about 16 bytes per pixel while it is
decoded, whatever its file size), so a budget of pixels (:class:`service.budget.Budget`)
bounds what is decoded at once over every request, and larger images of those formats are
refused from their header, before any pixel is decoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import ExifTags, Image

from edgecl.backbones.preprocess import DEFAULT_MAX_PIXELS, opened_image
from service.budget import Budget

#: EXIF orientation → the transpose that shows the image upright (as ImageOps does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def decode(
    data: bytes,
    budget: Budget,
    *,
    fit: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray[Any, Any], int]:
    """An RGB ``uint8`` array ``(H, W, 3)`` and the pixels decoded to get it.

    ``fit``: the image may be reduced as long as both sides stay at least this long (the
    backbone's input side); ``None`` keeps it whole. ``max_pixels``: the largest image
    accepted (a JPEG decoded at a reduced scale may be this large).

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (1000, 600), (9, 8, 7)).save(buf, format="PNG")
    >>> pixels, decoded = decode(buf.getvalue(), Budget(10**6), fit=224)
    >>> pixels.shape, decoded
    ((300, 500, 3), 600000)
    """
    with opened_image(data) as (img, undecodable):
        width, height = img.size
        _check(width, height, max_pixels, "")
        if fit is not None and img.format == "JPEG":
            img.draft("RGB", (fit, fit))  # decoded at 1/2, 1/4 or 1/8 scale
        width, height = img.size
        _check(width, height, budget.units, f" for a {img.format} image")
        try:
            orientation = int(img.getexif().get(ExifTags.Base.Orientation, 1))
            with budget.take(width * height):
                img.load()
                k = 1 if fit is None else max(1, min(width // fit, height // fit))
                small = img.reduce(k) if k > 1 else img
                upright = (
                    small.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else small
                )
                rgb = np.asarray(upright.convert("RGB"), dtype=np.uint8)
        except Exception as exc:  # Pillow raises many kinds on damaged files
            raise ValueError(f"{undecodable}: {exc}") from None
    return rgb, width * height


def _check(width: int, height: int, limit: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"image has zero size ({height}x{width})")
    if width * height > limit:
        raise ValueError(
            f"image of {width}x{height} = {width * height} pixels is over the limit of "
            f"{limit} pixels{what}"
        )
