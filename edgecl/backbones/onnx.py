"""ONNX Runtime backbones: the built int8 EfficientNet-Lite0, or any ONNX model you bring."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecl.backbones.manifest import read_manifest, sha256_file
from edgecl.backbones.preprocess import (
    DEFAULT_MAX_PIXELS,
    RESIZE_POLICIES,
    pad_fill,
    to_tensor,
    to_uint8,
)
from edgecl.types import FloatArray, State

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "OnnxBackbone", "read_manifest", "sha256_file"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxBackbone:
    """A frozen ONNX model as a backbone: images in, latents ``(N, *latent_shape)`` out.

    ``embed`` takes uint8 image batches ``(N,H,W)``, ``(N,H,W,1)``, ``(N,H,W,3)`` (or float in
    [0, 1]) and preprocesses them (resize policy, normalisation), or a list of images of any
    sizes or encoded bytes; a float array shaped exactly ``(N, 3, h, w)`` (the model's input
    size, NCHW) is taken as already preprocessed (see :meth:`preprocess`). Input and output
    names, size and layout come from the model when it declares them, else from arguments.
    Larger batches are run ``batch_size`` images at a time: ONNX Runtime's memory arena keeps
    the activations of the largest run, and on the int8 EfficientNet-Lite0 runs of 32 images
    held about 100 MiB more resident memory than runs of 8 at the same images/s.

    >>> import tempfile
    >>> from onnx import TensorProto, helper, save
    >>> graph = helper.make_graph(
    ...     [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
    ...      helper.make_node("Flatten", ["pooled"], ["features"])], "tiny",
    ...     [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
    ...     [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save(helper.make_model(graph), Path(tmp) / "tiny.onnx")
    ...     backbone = OnnxBackbone(Path(tmp) / "tiny.onnx", mean=[0.5] * 3, std=[0.5] * 3)
    >>> backbone.latent_shape, backbone.input_size
    ((3,), (8, 8))
    >>> backbone.embed(np.full((2, 28, 28), 255, dtype=np.uint8)).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        input_name: str | None = None,
        output_name: str | None = None,
        input_size: int | Sequence[int] | None = None,
        layout: str = "auto",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        resize: str = "center-crop",
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int | None = None,
        batch_size: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        sha256: str | None = None,
        graph_optimizations: bool = True,
    ) -> None:
        self.path = Path(model_path).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} not found")
        if sha256 is not None and sha256_file(self.path) != sha256:
            raise ValueError(f"{self.path} is not the model this was built with (sha256 differs)")
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"unknown resize policy {resize!r}; choose one of {RESIZE_POLICIES}")
        if batch_size < 1 or max_pixels < 1:
            raise ValueError("batch_size and max_pixels must be >= 1")
        if intra_op_threads is not None and intra_op_threads < 0:
            raise ValueError("intra_op_threads must be >= 0 (0: ONNX Runtime's default)")
        self._sha256 = sha256
        self.graph_optimizations = graph_optimizations
        #: The start-up self-check's result (``edgecl.backbones.selfcheck``), if one ran.
        self.check: State | None = None
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.resize = resize
        self.intra_op_threads = intra_op_threads
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.providers = self._providers(providers)
        self._session = self._open()
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        self.input_name = input_name if input_name is not None else next(iter(inputs))
        self.output_name = output_name if output_name is not None else outputs[0]
        if self.input_name not in inputs or self.output_name not in outputs:
            raise ValueError(
                f"{self.path.name} has inputs {list(inputs)} and outputs {outputs}; "
                f"got input_name={input_name!r}, output_name={output_name!r}"
            )
        spec = inputs[self.input_name]
        if spec.type not in _DTYPES:
            raise ValueError(f"model input type {spec.type} is not supported (float or float16)")
        self._dtype = _DTYPES[spec.type]
        shape = list(spec.shape)
        if len(shape) != 4:
            raise ValueError(f"model input {self.input_name} has rank {len(shape)}, expected 4")
        self.layout = self._layout(layout, shape)
        self.input_size = self._size(input_size, shape)
        if shape[0] == 1:
            self.batch_size = 1  # a model exported with a fixed batch of one
        probe = np.zeros((1, 3, *self.input_size), dtype=np.float32)
        self.latent_shape: tuple[int, ...] = tuple(self._run(probe).shape[1:])

    # -- construction -----------------------------------------------------------------
    @staticmethod
    def _providers(wanted: Sequence[str]) -> list[str]:
        import onnxruntime as ort

        if isinstance(wanted, str):
            wanted = [wanted]
        available = ort.get_available_providers()
        chosen = [p for p in wanted if p in available]
        for p in wanted:
            if p not in available:
                log.warning("execution provider %s is not available here; skipped", p)
        if not chosen:
            raise ValueError(f"none of the providers {list(wanted)} is available: {available}")
        return chosen

    def _open(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Requests embed concurrently: idle worker threads that spin burn the cores the
        # other runs need (4 concurrent single images: 269-285 vs 299-316 images/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not self.graph_optimizations:
            # Q/DQ nodes then run as written (dequantize, float op, quantize) instead of
            # fused int8 kernels: slower, but the same on every CPU.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(str(self.path), options, providers=self.providers)

    @staticmethod
    def _layout(layout: str, shape: list[Any]) -> str:
        if layout in ("NCHW", "NHWC"):
            return layout
        if layout != "auto":
            raise ValueError(f"layout must be 'auto', 'NCHW' or 'NHWC', got {layout!r}")
        if shape[1] == 3:
            return "NCHW"
        if shape[3] == 3:
            return "NHWC"
        raise ValueError(f"cannot tell the layout of input shape {shape}; give layout=")

    def _size(self, size: int | Sequence[int] | None, shape: list[Any]) -> tuple[int, int]:
        dims = shape[2:4] if self.layout == "NCHW" else shape[1:3]
        declared = tuple(dims) if all(isinstance(d, int) and d > 0 for d in dims) else None
        if size is None:
            if declared is None:
                raise ValueError(f"the model's input size is not fixed ({shape}); give input_size")
            return int(declared[0]), int(declared[1])
        hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if declared is not None and hw != declared:
            raise ValueError(f"input_size {hw} differs from the model's {declared}")
        return hw

    @classmethod
    def from_manifest(cls, path: str | os.PathLike[str], **options: Any) -> OnnxBackbone:
        """The backbone a build wrote (``manifest.json``); ``options`` override runtime settings
        (``providers``, ``intra_op_threads``, ``batch_size``, ``max_pixels``, ``resize``,
        ``graph_optimizations``)."""
        manifest = read_manifest(path)
        settings: dict[str, Any] = {
            "input_name": manifest["input"]["name"],
            "output_name": manifest["output"]["name"],
            "input_size": manifest["input"]["size"],
            "layout": manifest["input"].get("layout", "auto"),
            "mean": manifest["normalisation"]["mean"],
            "std": manifest["normalisation"]["std"],
            "resize": manifest.get("resize", "center-crop"),
            "sha256": manifest["model"]["sha256"],
        }
        settings.update(options)
        return cls(Path(path).parent / manifest["model"]["file"], **settings)

    @classmethod
    def from_spec(cls, spec: State) -> OnnxBackbone:
        fields = {k: v for k, v in spec.items() if k != "kind"}
        return cls(fields.pop("path"), **fields)

    def spec(self) -> State:
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return {
            "kind": "onnx",
            "path": str(self.path),
            "input_name": self.input_name,
            "output_name": self.output_name,
            "input_size": list(self.input_size),
            "layout": self.layout,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "providers": list(self.providers),
            "intra_op_threads": self.intra_op_threads,
            "batch_size": self.batch_size,
            "max_pixels": self.max_pixels,
            "sha256": self._sha256,
            "graph_optimizations": self.graph_optimizations,
        }

    # -- inference --------------------------------------------------------------------
    def preprocess(self, images: Any, *, index_offset: int = 0) -> FloatArray:
        """Images (a batch array, or a list of arrays or encoded bytes) to ``(N, 3, h, w)``."""
        return to_tensor(
            images,
            self.input_size,
            self.mean,
            self.std,
            self.resize,
            max_pixels=self.max_pixels,
            index_offset=index_offset,
        )

    def prepare(self, images: Any) -> npt.NDArray[np.uint8]:
        """Images resized as :meth:`embed` would, kept as uint8 ``(N, h, w, 3)``: a raw-image
        store holds these, and :meth:`embed` of them gives the same latents."""
        return to_uint8(
            images,
            self.input_size,
            self.resize,
            pad_fill(self.mean),
            max_pixels=self.max_pixels,
        )

    def _is_tensor(self, x: Any) -> bool:
        return (
            isinstance(x, np.ndarray)
            and x.dtype.kind == "f"
            and x.shape[1:] == (3, *self.input_size)
            and x.shape[-1] not in (1, 3)
        )

    def _run(self, tensor: FloatArray) -> FloatArray:
        feed = tensor.transpose(0, 2, 3, 1) if self.layout == "NHWC" else tensor
        feed = np.ascontiguousarray(feed, dtype=self._dtype)
        (out,) = self._session.run([self.output_name], {self.input_name: feed})
        return np.asarray(out, dtype=np.float32)

    def embed(self, x: Any) -> FloatArray:
        """Latents ``(N, *latent_shape)`` float32 for a batch; ``ValueError`` for bad images."""
        if self._is_tensor(x):
            chunks = [x[i : i + self.batch_size] for i in range(0, len(x), self.batch_size)]
            return np.concatenate([self._run(c) for c in chunks])
        if isinstance(x, np.ndarray) and x.ndim not in (3, 4):
            raise ValueError(
                f"expected images (N,H,W), (N,H,W,1), (N,H,W,3) or a preprocessed (N,3,"
                f"{self.input_size[0]},{self.input_size[1]}) tensor, got shape {x.shape}"
            )
        n = len(x)
        if n == 0:
            raise ValueError("the batch is empty; give at least one image")
        out = [
            self._run(self.preprocess(x[i : i + self.batch_size], index_offset=i))
            for i in range(0, n, self.batch_size)
        ]
        return np.concatenate(out)
