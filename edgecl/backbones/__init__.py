"""Frozen feature extractors. Heavy ones (ONNX Runtime) import their runtime on use."""

from __future__ import annotations

from edgecl.backbones.identity import IdentityBackbone
from edgecl.protocols import Backbone
from edgecl.types import State

__all__ = ["IdentityBackbone", "from_spec"]


def from_spec(spec: State) -> Backbone:
    """Rebuild a backbone from what its ``spec()`` returned."""
    kind = spec.get("kind")
    if kind == "identity":
        return IdentityBackbone(int(spec["dim"]))
    if kind == "onnx":
        from edgecl.backbones.onnx import OnnxBackbone

        return OnnxBackbone.from_spec(spec)
    raise ValueError(f"unknown backbone kind {kind!r}")
