"""Image bytes to pixels within a memory bound.

Each image is decoded alone and made small at once: a JPEG is decoded at a reduced scale
(Pillow's ``draft``), other formats are reduced right after decoding. PNG, WebP, BMP, GIF
and TIFF can only be decoded whole (a lossless WebP costs about 16 bytes per pixel while
it is decoded, whatever its file size), so a budget of pixels
(:class:`service.budget.Budget`, ``EDGECL_DECODE_PIXELS``) bounds what is decoded at once
over every request, and larger images of those formats are refused from their header,
before any pixel is decoded. Of a GIF or TIFF with several frames, the first is taken.
Every image too large is refused with one sentence (:func:`too_large`), Pillow's own guard
included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import ExifTags, Image

from edgecl.backbones.preprocess import DEFAULT_MAX_PIXELS, opened_image
from service.budget import Budget

#: What Pillow may open (a camera's multi-picture JPEG opens as format MPO).
#: The setting behind the budget, named in the sentence that refuses an image.
SETTING = "EDGECL_DECODE_PIXELS"

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
    why: str | None = None,
) -> tuple[np.ndarray[Any, Any], int]:
    """A ``uint8`` array, RGB ``(H, W, 3)`` or grayscale ``(H, W, 1)``, and the pixels
    decoded to get it.

    ``fit``: the image may be reduced as long as both sides stay at least this long (the
    backbone's input side); ``None`` keeps it whole. ``max_pixels``: the largest image
    accepted (a JPEG decoded at a reduced scale may be this large); ``why`` says why, when
    that is not the usual reason.

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (1000, 600), (9, 8, 7)).save(buf, format="PNG")
    >>> pixels, decoded = decode(buf.getvalue(), Budget(10**6), fit=224)
    >>> pixels.shape, decoded
    ((300, 500, 3), 600000)
    >>> decode(buf.getvalue(), Budget(10**5))
    Traceback (most recent call last):
    ...
    ValueError: image of 1000x600 = 600000 pixels is over the limit of 100000 pixels for \
a PNG image: a JPEG is decoded reduced, up to 40000000 pixels, other formats whole, up to \
EDGECL_DECODE_PIXELS = 100000
    """

    def check(width: int, height: int, limit: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"image has zero size ({height}x{width})")
        if width * height > limit:
            kind = "JPEG" if jpeg else str(img.format)
            raise ValueError(too_large(width, height, limit, kind, budget.units, max_pixels, why))

    with opened_image(data) as (img, undecodable):
        jpeg = img.format in ("JPEG", "MPO")
        width, height = img.size
        check(width, height, max_pixels if jpeg else min(max_pixels, budget.units))
        if fit is not None and jpeg:
            img.draft("RGB", (fit, fit))  # decoded at 1/2, 1/4 or 1/8 scale
        width, height = img.size
        check(width, height, budget.units)
        try:
            orientation = int(img.getexif().get(ExifTags.Base.Orientation, 1))
            with budget.take(width * height):
                img.load()  # the first frame of a GIF or TIFF
                # Palette, bilevel and 16-bit images cannot be reduced: made RGB first.
                rgb = img if img.mode in ("RGB", "L") else img.convert("RGB")
                k = 1 if fit is None else max(1, min(width // fit, height // fit))
                small = rgb.reduce(k) if k > 1 else rgb
                upright = (
                    small.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else small
                )
                # Grayscale stays one channel: resized before it is widened, a third of
                # the work (the same pixels).
                if upright.mode == "L":
                    pixels = np.asarray(upright, dtype=np.uint8)[:, :, None]
                else:
                    pixels = np.asarray(upright.convert("RGB"), dtype=np.uint8)
        except Exception as exc:  # Pillow raises many kinds on damaged files
            raise ValueError(f"{undecodable}: {exc}") from None
    return pixels, width * height


def too_large(
    width: int,
    height: int,
    limit: int,
    kind: str,
    decode_pixels: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    why: str | None = None,
) -> str:
    """The one sentence that refuses an image too large: its size, the limit, and the
    setting (or ``why``) behind it.

    >>> too_large(8000, 6000, 40_000_000, "JPEG", 4_000_000)[:74]
    'image of 8000x6000 = 48000000 pixels is over the limit of 40000000 pixels '
    """
    reason = why or (
        f"a JPEG is decoded reduced, up to {max_pixels} pixels, other formats whole, "
        f"up to {SETTING} = {decode_pixels}"
    )
    return (
        f"image of {width}x{height} = {width * height} pixels is over the limit of {limit} "
        f"pixels for a {kind} image: {reason}"
    )
