"""Frozen feature extractors. Heavy ones (ONNX Runtime) import their runtime on use.

``OnnxBackbone`` and the ``preprocess`` module load on first access, so ``import edgecl``
pulls in neither Pillow nor ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgecl.backbones.identity import IdentityBackbone
from edgecl.protocols import Backbone
from edgecl.types import State

if TYPE_CHECKING:
    from edgecl.backbones import preprocess
    from edgecl.backbones.onnx import OnnxBackbone

__all__ = [
    "BackboneChangedError",
    "IdentityBackbone",
    "OnnxBackbone",
    "check_same",
    "describe",
    "from_spec",
    "preprocess",
]


def __getattr__(name: str) -> Any:
    if name == "OnnxBackbone":
        return importlib.import_module("edgecl.backbones.onnx").OnnxBackbone
    if name == "preprocess":
        return importlib.import_module("edgecl.backbones.preprocess")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_spec(spec: State) -> Backbone:
    """Rebuild a backbone from what its ``spec()`` returned."""
    kind = spec.get("kind")
    if kind == "identity":
        return IdentityBackbone(int(spec["dim"]))
    if kind == "onnx":
        from edgecl.backbones.onnx import OnnxBackbone

        return OnnxBackbone.from_spec(spec)
    raise ValueError(f"unknown backbone kind {kind!r}")


class BackboneChangedError(ValueError):
    """A state learned on one backbone was offered another: its latents mean nothing there."""


def describe(spec: State) -> str:
    """A short name for a backbone spec, for messages.

    >>> describe({"kind": "identity", "dim": 3})
    'identity backbone of dim 3'
    """
    if spec.get("kind") == "onnx":
        return f"ONNX backbone {spec.get('path')} (sha256 {str(spec.get('sha256'))[:12]})"
    return f"{spec.get('kind')} backbone of dim {spec.get('dim')}"


def check_same(saved: State, current: State) -> None:
    """``BackboneChangedError`` unless both specs name the same model (the ONNX file's
    sha256, or the identity's dim); runtime options such as threads may differ.

    >>> try:
    ...     check_same({"kind": "identity", "dim": 3}, {"kind": "identity", "dim": 4})
    ... except BackboneChangedError as exc:
    ...     print(str(exc)[:70])
    the state was learned on the identity backbone of dim 3, but the backb
    """
    kind = saved.get("kind")
    key = "sha256" if kind == "onnx" else "dim"
    if kind != current.get("kind") or saved.get(key) != current.get(key):
        raise BackboneChangedError(
            f"the state was learned on the {describe(saved)}, but the backbone now is the "
            f"{describe(current)}; its latents do not apply: re-embed a raw-input memory "
            "(edgecl store reembed) or start afresh"
        )
