"""Small shared types: labels and array aliases."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

#: A class label as users give it: a string or a (non-boolean) integer.
Label = str | int

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
AnyArray = npt.NDArray[Any]

#: Plain-data state: numbers, strings, arrays, lists and dicts of them (msgpack-able).
State = dict[str, Any]


def check_label(label: object) -> Label:
    """Return ``label`` if it is a valid label, else raise ``ValueError``.

    >>> check_label("cat"), check_label(3)
    ('cat', 3)
    >>> check_label(True)
    Traceback (most recent call last):
    ...
    ValueError: label True has type bool; labels must be str or int
    """
    if isinstance(label, bool) or not isinstance(label, (str, int, np.integer)):
        raise ValueError(
            f"label {label!r} has type {type(label).__name__}; labels must be str or int"
        )
    if isinstance(label, str) and not label:
        raise ValueError("label is an empty string; labels must be non-empty")
    if isinstance(label, str) and not label.isascii():
        try:
            label.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate: state and the WAL are msgpack, which only carries UTF-8.
            raise ValueError(
                "label is not valid Unicode text (it holds a lone surrogate)"
            ) from None
    if isinstance(label, (int, np.integer)) and not -(2**63) <= int(label) < 2**63:
        raise ValueError("integer label is outside the signed 64-bit range")
    return int(label) if isinstance(label, np.integer) else label
