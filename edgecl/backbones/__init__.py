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

__all__ = ["IdentityBackbone", "OnnxBackbone", "from_spec", "preprocess"]


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
