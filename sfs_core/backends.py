"""Inference backends for exported networks: ONNX Runtime and OpenVINO on the CPU.

A backend turns a float32 NCHW array into the network's raw outputs; every stage keeps its own
pre- and post-processing, so the same post-processing runs on torch and on exported models.
Exports are cached under ``cache_dir/exports`` keyed by the checkpoint's content, so
``backend: openvino`` works on any supported checkpoint and the export runs once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from sfs_core.quantize import Calibration

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")


def resolve_backend(requested: str, device: str, exportable: bool = True) -> str:
    """``auto``: OpenVINO on the CPU (fastest measured here), else ONNX Runtime, else torch;
    torch on GPUs and for models we do not export."""
    if requested != "auto":
        return requested
    if device == "cpu" and exportable:
        for name in ("openvino", "onnxruntime"):
            if importlib.util.find_spec(name) is not None:
                return name
    return "torch"


class PixelNormalization(NamedTuple):
    """``(pixel - mean) / std`` per RGB channel, in 0-255 pixel units: a network's input scaling."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class ExportedRunner:
    """Callable ``(1, 3, H, W) float32 array -> list of output arrays`` for one exported network
    (``(1, H, W, 3)`` uint8 pixels when :attr:`pixel_input` is set)."""

    def __init__(self, onnx_path: Path, backend: str, threads: int = 0, precision: str = "auto",
                 calibration: Calibration | None = None, channels_last: bool = False,
                 pixel_input: PixelNormalization | None = None) -> None:
        """``calibration``: OpenVINO runs the network quantized to int8 on its inputs
        (:mod:`sfs_core.quantize`; the caller decides when, ``precision: auto``). Otherwise
        ``precision`` (:data:`~sfs_core.config.PRECISIONS`) ``auto``/``half`` take OpenVINO's
        default (bf16 where the CPU has it) and ``f32`` full precision. ``channels_last``:
        OpenVINO returns the first output as ``(N, H, W, C)`` (:attr:`channels_last`), the layout
        its CPU plugin computes in, so it skips a reorder and a channel argmax reads contiguous
        rows; ONNX Runtime returns the exported layout. ``pixel_input``: OpenVINO takes uint8
        ``(1, H, W, 3)`` pixels and normalises them in its graph (:attr:`pixel_input`; the
        network itself, and a calibration, keep the float NCHW input); ONNX Runtime ignores it."""
        if backend not in ("onnxruntime", "openvino"):
            raise ValueError(f"unknown exported backend '{backend}'")
        self.backend = backend
        self.path = Path(onnx_path)
        self.channels_last = channels_last and backend == "openvino"
        self.pixel_input = pixel_input if backend == "openvino" else None
        if backend == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads > 0:
                options.intra_op_num_threads = threads
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
        else:
            import openvino as ov

            self._core = ov.Core()
            self._model_path = openvino_ir(self.path)
            quantized = calibration is not None
            if quantized:
                from sfs_core.quantize import quantized_ir

                self._model_path = quantized_ir(self._model_path, calibration)
            self._properties = {"PERFORMANCE_HINT": "LATENCY"}
            if threads > 0:
                self._properties["INFERENCE_NUM_THREADS"] = threads
            if precision == "f32" or quantized:  # the layers int8 leaves in float: f32 (faster than bf16 here)
                self._properties["INFERENCE_PRECISION_HINT"] = "f32"
            self._compiled: OrderedDict[tuple[int, ...], object] = OrderedDict()

    def _request_for(self, shape: tuple[int, ...]):
        """OpenVINO runs fastest on static shapes: compile once per input shape (a few kept)."""
        request = self._compiled.get(shape)
        if request is None:
            model = self._core.read_model(str(self._model_path))
            if self.pixel_input is not None:
                model = _with_pixel_input(model, shape, self.pixel_input)
            else:
                model.reshape({0: list(shape)})
            if self.channels_last:
                import openvino.opset13 as ops

                result = model.get_results()[0]
                nhwc = ops.transpose(result.input_value(0), ops.constant(np.array([0, 2, 3, 1], dtype=np.int64)))
                result.input(0).replace_source_output(nhwc.output(0))
                model.validate_nodes_and_infer_types()
            request = self._core.compile_model(model, "CPU", self._properties).create_infer_request()
            self._compiled[shape] = request
            if len(self._compiled) > 4:
                self._compiled.popitem(last=False)
        return request

    def __call__(self, x: np.ndarray, copy: bool = True) -> list[np.ndarray]:
        """Outputs of one forward. ``copy=False`` may return views of the backend's buffers,
        valid only until the next call (saves copying outputs that are reduced at once)."""
        x = np.ascontiguousarray(x, dtype=np.float32 if self.pixel_input is None else np.uint8)
        if self.backend == "onnxruntime":
            return self._session.run(None, {self._input: x})
        request = self._request_for(tuple(x.shape))
        # Shared in and out: no copy of the input, nor of every output into a returned dict
        # (~0.6 ms a call for SegFormer's 9.8 MB of scores); outputs are read below.
        request.infer({0: x}, share_inputs=True, share_outputs=True)
        outputs = [request.get_output_tensor(i).data for i in range(len(request.model_outputs))]
        return [out.copy() for out in outputs] if copy else outputs


def _with_pixel_input(model, shape: tuple[int, ...], norm: PixelNormalization):
    """``model`` (NCHW float input) taking ``shape`` ``(N, H, W, 3)`` uint8 pixels: the
    conversion, normalisation and transpose run in OpenVINO's graph, faster than in numpy."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    n, h, w, c = shape
    model.reshape({0: [n, c, h, w]})
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(list(norm.mean)).scale(list(norm.std))
    return ppp.build()


def openvino_ir(onnx_path: Path) -> Path:
    """OpenVINO IR (``.xml`` + ``.bin``) next to an ONNX file, converted once."""
    xml = onnx_path.with_suffix(".openvino.xml")
    if not xml.exists():
        import openvino as ov

        tmp = xml.with_name(xml.name + f".{os.getpid()}.tmp.xml")
        ov.save_model(ov.convert_model(str(onnx_path)), str(tmp), compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
        tmp.replace(xml)
    return xml


def checkpoint_digest(source: str | os.PathLike) -> str:
    """Short content hash of a checkpoint file or folder (weights files only)."""
    path = Path(source)
    digest = hashlib.sha256()
    if not path.exists():  # a hub id: key by name (the hub's cache holds the files)
        digest.update(str(source).encode())
        return digest.hexdigest()[:16]
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".pt"))
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def cached_export(source: str, cache_dir: str | os.PathLike, tag: str, export: Callable[[Path], None]) -> Path:
    """ONNX file for ``source`` under ``cache_dir/exports``, produced by ``export(path)`` once.

    The key is the checkpoint's content hash plus ``tag`` (input shape, opset), so a changed
    checkpoint is exported again. Writes go to a temporary name first: concurrent processes
    never load a half-written file.
    """
    folder = Path(os.path.expanduser(str(cache_dir))) / "exports"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"no write permission on {folder}")
    except OSError as err:  # degrade: export into a temporary folder (redone at every start)
        fallback = Path(tempfile.gettempdir()) / f"sfs_exports-{os.getuid()}"
        log.warning("cannot write the export cache %s (%s); exporting to %s instead", folder, err, fallback)
        folder = fallback
        folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{Path(source).stem}-{checkpoint_digest(source)}-{tag}.onnx"
    if not target.exists():
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.onnx")
        export(tmp)
        tmp.replace(target)
    return target
