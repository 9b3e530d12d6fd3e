"""Quantizing a backbone logs one summary line, not ORT's line per widened weight scale."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgecl.backbones.quantize import Format, quantize


def tiny_conv(path: Path, channels: int = 8) -> None:
    """A 1x1 convolution whose tiny weights and large biases make ORT widen every channel's
    weight scale (the bias scale, input scale x weight scale, would not hold the bias in
    int32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.full((channels, 3, 1, 1), 1e-4, dtype=np.float32)
    bias = np.full((channels,), 1e4, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["input"], ["x"], name="relu"),
            helper.make_node("Conv", ["x", "w", "b"], ["out"], name="conv"),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, channels, 4, 4])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_widened_scales_are_one_summary_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tiny_conv(tmp_path / "fp32.onnx")
    calibration = np.random.default_rng(0).random((4, 3, 4, 4), dtype=np.float32)
    with caplog.at_level(logging.INFO):
        quantize(
            tmp_path / "fp32.onnx",
            tmp_path / "int8.onnx",
            calibration,
            "input",
            Format(float_stem=False),
        )
        # The filter is gone afterwards: the root logger passes such lines again.
        logging.getLogger().info("Increased scale[0] for weight `w` (not from a build)")
    assert (tmp_path / "int8.onnx").is_file()
    assert "quantizer widened 8 weight scales so their biases fit int32" in caplog.text
    assert caplog.text.count("Increased scale") == 1  # the line logged after the build
