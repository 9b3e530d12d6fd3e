"""Static int8 quantization of an fp32 ONNX backbone (QDQ, per-channel), with bias correction.

Used by :mod:`edgecl.backbones.build`; needs ``onnx`` and ``onnxruntime`` (no torch).

Steps: ORT's pre-processing (shape inference, BatchNorm and Pad folded into Conv), then bias
correction, then ``quantize_static``. Bias correction matters here: int8 depthwise weights
shift each channel's mean output, and the shifts add up over 16 blocks (on Fashion-MNIST the
mean int8/fp32 cosine was 0.966 without it and 0.990 with it). For every Conv we measure, on
the calibration images, the mean input seen by each kernel tap and subtract the expected
error ``sum((W_int8 - W) * mean_input)`` from the bias (Nagel et al. 2019, "Data-Free
Quantization", section 4.2, with empirical means).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecl.types import FloatArray

log = logging.getLogger(__name__)

#: What ``quantize`` does, recorded in the manifest.
SCHEME: dict[str, Any] = {
    "format": "QDQ",
    "weights": "int8 reduced to 7 bits (-64..64), symmetric, per output channel",
    "activations": "uint8, asymmetric, per tensor",
    "float_layers": "the convolutions on the model input (the stem)",
    "calibration_method": "MinMax",
    "bias_correction": True,
}
#: Weights in -64..64: x86 CPUs without VNNI multiply uint8 by int8 with ``vpmaddubsw``,
#: whose pairwise int16 sums saturate when 255 * 127 * 2 > 32767; with 7-bit weights they
#: cannot (255 * 64 * 2 = 32640). Full 8-bit weights gave cosine 0.905 (min 0.760) against
#: fp32 on such a CPU, and 0.997 with ONNX Runtime's graph optimisations off.
REDUCE_RANGE = True


def _session(model: Any, threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def int8_weights(w: npt.NDArray[np.float32], qmax: int = 127) -> npt.NDArray[np.float32]:
    """Round-trip weights through symmetric per-output-channel int8, as ORT quantizes them
    (``qmax`` 63 with ``reduce_range``).

    >>> [round(float(v), 4) for v in int8_weights(np.array([[1.0, 0.3]], dtype=np.float32))[0]]
    [1.0, 0.2992]
    """
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    scale = np.abs(flat).max(axis=1) / float(qmax)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(flat / scale[:, None]), -qmax, qmax) * scale[:, None]
    out: npt.NDArray[np.float32] = q.reshape(w.shape).astype(np.float32)
    return out


def _tap_means(
    x: npt.NDArray[np.float32], kernel: tuple[int, int], attrs: dict[str, Any]
) -> npt.NDArray[np.float64]:
    """Sum over batch, of the mean over output positions, of the input under each kernel tap.

    Returns ``(C_in, kh, kw)``; exact with zero padding and strides.
    """
    kh, kw = kernel
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((x.shape[1], kh, kw), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            win = xp[:, :, y0 : y0 + sh * (oh - 1) + 1 : sh, x0 : x0 + sw * (ow - 1) + 1 : sw]
            out[:, i, j] = win.mean(axis=(2, 3), dtype=np.float64).sum(axis=0)
    return out


def correct_biases(
    model: Any,
    calibration: FloatArray,
    input_name: str,
    skip: Collection[str] = (),
    qmax: int = 127,
) -> int:
    """Fold the expected int8 weight error of every Conv into its bias, in place.

    Convs named in ``skip`` (kept in float) are left alone. Returns how many were corrected.
    """
    from onnx import TensorProto, helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    convs = [
        n
        for n in model.graph.node
        if n.op_type == "Conv"
        and n.name not in skip
        and len(n.input) == 3
        and n.input[1] in inits
        and n.input[2] in inits
    ]
    probe = type(model)()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    wanted = sorted({n.input[0] for n in convs} - {input_name})
    for name in wanted:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = _session(probe)
    sums: dict[str, npt.NDArray[np.float64]] = {}
    for start in range(0, len(calibration), 4):
        batch = calibration[start : start + 4]
        seen = dict(zip(wanted, session.run(wanted, {input_name: batch}), strict=True))
        seen[input_name] = batch
        for node in convs:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            kh, kw = inits[node.input[1]].dims[2:4]
            part = _tap_means(seen[node.input[0]], (kh, kw), attrs)
            sums[node.name] = sums[node.name] + part if node.name in sums else part
    corrected = 0
    for node in convs:
        w = numpy_helper.to_array(inits[node.input[1]])
        groups = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
        err = (int8_weights(w, qmax) - w).astype(np.float64)
        mean_in = sums[node.name] / len(calibration)
        if groups == 1:
            shift = np.einsum("oikl,ikl->o", err, mean_in)
        elif groups == w.shape[0] and w.shape[1] == 1 and mean_in.shape[0] == groups:
            shift = np.einsum("okl,okl->o", err[:, 0], mean_in)
        else:
            log.info("no bias correction for grouped conv %s", node.name)
            continue
        bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
        new = numpy_helper.from_array((bias - shift).astype(np.float32), node.input[2])
        inits[node.input[2]].CopyFrom(new)
        corrected += 1
    return corrected


class _Reader:
    """Feeds calibration images one at a time (duck-types ORT's ``CalibrationDataReader``)."""

    def __init__(self, data: FloatArray, input_name: str) -> None:
        self._items = iter(range(len(data)))
        self._data = data
        self._name = input_name

    def get_next(self) -> dict[str, FloatArray] | None:
        i = next(self._items, None)
        return None if i is None else {self._name: self._data[i : i + 1]}


def float_nodes(model: Any, input_name: str) -> list[str]:
    """The convolutions kept in float: those reading the model input (the stem).

    With 3 input channels the int8 stem runs slower than the float one here, and its
    7-bit weights cost most of the remaining error (cosine 0.990 to 0.994 on the held-out
    photos with it in float)."""
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] == input_name]


@dataclass(frozen=True)
class Format:
    """A quantization format; the default is what builds use (``SCHEME``). Benchmarks
    compare others (``benchmarks/backbone_formats.py``)."""

    quant_format: str = "QDQ"  # or "QOperator"
    activations: str = "uint8"  # or "int8"
    weights: str = "int8"  # or "uint8"
    reduce_range: bool = REDUCE_RANGE
    float_stem: bool = True
    float_nodes: tuple[str, ...] = ()  # further convolutions kept in float, by node name


def quantize(
    fp32_path: Path,
    int8_path: Path,
    calibration: FloatArray,
    input_name: str,
    fmt: Format = Format(),
) -> None:
    """Write the int8 model for ``fp32_path`` to ``int8_path`` (QDQ, ``SCHEME``, by default)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ValueError("no calibration images")
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory(prefix="edgecl-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        model = onnx.load(str(prepared))
        keep = [*(float_nodes(model, input_name) if fmt.float_stem else []), *fmt.float_nodes]
        qmax = 64 if fmt.reduce_range else 127
        if fmt.weights == "int8":  # ORT's uint8 weights are asymmetric: int8_weights differs
            n = correct_biases(model, calibration, input_name, skip=keep, qmax=qmax)
            log.info("bias correction applied to %d convolutions", n)
        corrected = Path(tmp) / "corrected.onnx"
        onnx.save(model, str(corrected))
        form = QuantFormat.QDQ if fmt.quant_format == "QDQ" else QuantFormat.QOperator
        with _WidenedScales() as widened:
            quantize_static(
                str(corrected),
                str(int8_path),
                _Reader(calibration, input_name),
                quant_format=form,
                per_channel=True,
                activation_type=types[fmt.activations],
                weight_type=types[fmt.weights],
                calibrate_method=CalibrationMethod.MinMax,
                reduce_range=fmt.reduce_range,
                nodes_to_exclude=keep,
            )
        if widened.count:
            log.info("quantizer widened %d weight scales so their biases fit int32", widened.count)


class _WidenedScales(logging.Filter):
    """Drops ORT's "Increased scale[...]" lines, one per widened channel (dozens on the first
    build), and counts them: ORT logs them on the root logger, so only records made there
    are filtered, and other loggers are untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Increased scale["):
            self.count += 1
            return False
        return True

    def __enter__(self) -> _WidenedScales:
        logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeFilter(self)
