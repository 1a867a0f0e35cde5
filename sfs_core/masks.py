"""Class-agnostic masks from FastSAM (a YOLOv8-seg model) through ``ultralytics.FastSAM``.

We run the network ourselves and post-process its raw outputs (boxes, scores, mask coefficients,
prototypes) at prototype resolution: ultralytics' ``predict()`` spends most of its time
upsampling every mask to full resolution, which the semantic map never needs.
"""

from __future__ import annotations

import functools
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sfs_core.backends import ExportedRunner, PixelNormalization, cached_export, resolve_backend
from sfs_core.config import ConfigError, MaskGeneratorConfig

#: YOLO's input scaling: pixels / 255.
PIXELS = PixelNormalization((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))


@dataclass
class MaskResult:
    """Masks of one frame.

    Attributes:
        masks: ``(N, h, w)`` bool on the model device. At prototype resolution (1/4 of the
            letterboxed input, padding removed) unless ``retina`` is set, then ``(N, H, W)``.
        boxes: ``(N, 4)`` float32 xyxy in input-image pixels.
        scores: ``(N,)`` float32, sorted descending.
        image_size: ``(H, W)`` of the input image.
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.masks.shape[0])


@dataclass
class RawMasks:
    """FastSAM's raw outputs for one image (:meth:`MaskGenerator.infer`): ``preds``
    ``(1, 4+nc+32, A)``, ``protos`` ``(1, 32, Hp/4, Wp/4)``, the resized image size inside the
    letterbox and the input image size."""

    preds: torch.Tensor
    protos: torch.Tensor
    resized: tuple[int, int]
    image_size: tuple[int, int]


def letterbox_size(height: int, width: int, imgsz: int, stride: int = 32) -> tuple[int, int, int, int]:
    """Resized ``(h, w)`` keeping aspect with the long side ``imgsz``, and the padded ``(H, W)``
    rounded up to ``stride`` (rectangular inference, padding at the bottom and right)."""
    scale = imgsz / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    return new_h, new_w, math.ceil(new_h / stride) * stride, math.ceil(new_w / stride) * stride


class MaskGenerator:
    """FastSAM "segment everything".

    Input: one ``(H, W, 3)`` uint8 RGB image. Output: :class:`MaskResult`.

    >>> gen = MaskGenerator(MaskGeneratorConfig(model="models/FastSAM-s.pt"))  # doctest: +SKIP
    >>> result = gen(np.zeros((480, 640, 3), np.uint8))  # doctest: +SKIP
    >>> result.masks.shape  # doctest: +SKIP
    torch.Size([N, 120, 160])
    """

    def __init__(
        self, config: MaskGeneratorConfig, device: str = "cpu", cache_dir: str = "~/.cache/sfs_ros",
        threads: int = 0, precision: str = "auto", calibration_images: str = "",
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.stride = 32
        self.end2end = False
        self.half = self.device.type == "cuda" and precision in ("auto", "half")
        #: Mask-coefficient product in bf16 (fp32 accumulation) on CPUs that compute bf16 natively:
        #: ~2x faster; only pixels whose logit is within bf16 rounding of 0 can flip.
        self.bf16_product = self.device.type == "cpu" and precision in ("auto", "half") and _cpu_has_bf16()
        self.runner: ExportedRunner | None = None
        self.engine = None  # ultralytics AutoBackend of a TensorRT engine (backend tensorrt)
        self.backend = resolve_backend(config.backend, device)
        if self.backend == "tensorrt":
            self.engine, self.half = load_tensorrt_engine(config.model, device), False  # the engine casts its input
            return
        if config.model.endswith(".onnx"):
            if self.backend == "torch":
                raise ConfigError("masks.backend", "an .onnx model needs backend onnxruntime or openvino")
            self.runner = ExportedRunner(Path(config.model), self.backend, threads, precision,
                                         self._calibration(precision, calibration_images), pixel_input=PIXELS)
            return
        from ultralytics import FastSAM

        wrapper = FastSAM(config.model)
        net = wrapper.model
        self.stride = int(max(getattr(net, "stride", torch.tensor([32])).max().item(), 32))
        self.end2end = bool(getattr(net, "end2end", False))
        if self.backend != "torch":
            checkpoint = getattr(wrapper, "ckpt_path", None) or config.model
            onnx = cached_export(checkpoint, cache_dir, "dyn-op18", lambda path: export_fastsam_onnx(checkpoint, path))
            self.runner = ExportedRunner(onnx, self.backend, threads, precision,
                                         self._calibration(precision, calibration_images), pixel_input=PIXELS)
            return
        net = net.to(self.device).eval()
        net = net.fuse() if hasattr(net, "fuse") else net
        self.net = net.half() if self.half else net.float()

    def _calibration(self, precision: str, folder: str):
        """What the int8 quantization of ``precision: auto`` on OpenVINO calibrates on; None otherwise."""
        if precision != "auto" or self.backend != "openvino":
            return None
        from sfs_core.quantize import calibration

        return calibration(folder, lambda image: self.preprocess(image)[0].numpy(), f"imgsz{self.config.imgsz}-stride{self.stride}")

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Letterboxed ``(Hp, Wp, 3)`` uint8 image (padded with 114 at the bottom and right) and
        the resized size ``(h, w)`` inside it; ``image`` itself when nothing changes."""
        h0, w0 = image.shape[:2]
        new_h, new_w, pad_h, pad_w = letterbox_size(h0, w0, self.config.imgsz, self.stride)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_h, new_w) != (h0, w0) else image
        if (new_h, new_w) == (pad_h, pad_w):
            return resized, (new_h, new_w)
        canvas = np.full((pad_h, pad_w, 3), 114, dtype=np.uint8)
        canvas[:new_h, :new_w] = resized
        return canvas, (new_h, new_w)

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Letterboxed ``(1, 3, Hp, Wp)`` float tensor in [0, 1] and the resized image size ``(h, w)`` inside it."""
        canvas, resized = self.letterbox(image)
        if self.device.type == "cpu" and not self.half:
            # Channel by channel into a contiguous planar buffer: ~3x faster than torch's permute,
            # float and divide, and exported backends take it without another copy.
            x = np.empty((1, 3, *canvas.shape[:2]), np.float32)
            for c in range(3):
                np.divide(canvas[:, :, c], np.float32(255.0), out=x[0, c], dtype=np.float32)
            return torch.from_numpy(x), resized
        x = torch.from_numpy(np.array(canvas)).to(self.device).permute(2, 0, 1)[None]
        x = x.half() if self.half else x.float()
        return x.div_(255.0), resized

    def model_input(self, image: np.ndarray) -> tuple[torch.Tensor | np.ndarray, tuple[int, int]]:
        """What :meth:`forward` takes for ``image``: :meth:`preprocess`'s tensor, or the
        letterboxed uint8 pixels ``(1, Hp, Wp, 3)`` where the backend normalises them itself."""
        if self.runner is not None and self.runner.pixel_input is not None:
            canvas, resized = self.letterbox(image)
            return canvas[None], resized
        return self.preprocess(image)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor | np.ndarray, copy: bool = True):
        """Raw network outputs (input from :meth:`model_input`) ``(predictions (1, 4+nc+32, A), prototypes (1, 32, Hp/4, Wp/4))``.
        ``copy=False``: an exported backend's outputs may be views, valid until the next call."""
        if self.runner is not None:
            preds, protos = self.runner(x.numpy() if isinstance(x, torch.Tensor) else x, copy=copy)[:2]
            return torch.from_numpy(preds), torch.from_numpy(protos)
        if self.engine is not None:
            try:
                preds, protos = self.engine(x)[:2]  # outputs sorted by name: output0, output1
            except AssertionError as exc:  # ultralytics' static-shape check
                raise ValueError(f"{exc}: the TensorRT engine was built for another camera size; "
                                 "rebuild it for this one (python -m sfs_core.tensorrt --image-size WxH)") from exc
            return preds, protos
        out = self.net(x)
        (preds, protos), _ = out if isinstance(out[0], tuple) else ((out[0], out[1]), None)
        return preds, protos

    @torch.inference_mode()
    def postprocess(self, preds: torch.Tensor, protos: torch.Tensor, resized: tuple[int, int], image_size: tuple[int, int]) -> MaskResult:
        """NMS, top-N, and masks at prototype resolution (or full resolution with ``retina``)."""
        from ultralytics.utils.nms import non_max_suppression

        cfg = self.config
        det = non_max_suppression(
            preds, cfg.conf, cfg.iou, agnostic=True, max_det=cfg.max_masks, nc=1,
            end2end=self.end2end, max_time_img=10.0,
        )[0]
        boxes, scores, coefs = det[:, :4].float(), det[:, 4].float(), det[:, 6:].float()
        proto = protos[0].float()
        c, ph, pw = proto.shape
        xh, xw = ph * 4, pw * 4  # letterboxed input size
        new_h, new_w = resized
        h0, w0 = image_size
        if cfg.retina:
            logits = (coefs @ proto.view(c, -1)).view(-1, ph, pw)
            # Full resolution: upsample the letterboxed logits, crop the padding, resize to the image.
            logits = F.interpolate(logits[None], size=(xh, xw), mode="bilinear", align_corners=False)[0]
            logits = logits[:, :new_h, :new_w]
            logits = F.interpolate(logits[None], size=(h0, w0), mode="bilinear", align_corners=False)[0]
            box_scale = torch.tensor([w0 / new_w, h0 / new_h] * 2, device=boxes.device)
            grid_boxes = boxes * box_scale
        else:
            mh, mw = max(1, math.ceil(new_h / 4)), max(1, math.ceil(new_w / 4))
            # Padding cut before the product: only the image's prototype pixels are computed.
            proto = proto[:, :mh, :mw].reshape(c, mh * mw)
            if self.bf16_product:
                coefs, proto = coefs.bfloat16(), proto.bfloat16()
            logits = (coefs @ proto).view(-1, mh, mw)
            grid_boxes = boxes / 4.0
        masks = _crop_to_boxes(logits, grid_boxes)
        boxes = boxes * torch.tensor([w0 / new_w, h0 / new_h] * 2, device=boxes.device)
        boxes[:, 0::2].clamp_(0, w0)
        boxes[:, 1::2].clamp_(0, h0)
        return MaskResult(masks=masks, boxes=boxes, scores=scores, image_size=(h0, w0))

    def __call__(self, image: np.ndarray, timings: dict[str, float] | None = None) -> MaskResult:
        return self.decode(self.infer(image, timings), timings)

    def infer(self, image: np.ndarray, timings: dict[str, float] | None = None) -> RawMasks:
        """The network's raw outputs for ``image``; exported backends' stay in their buffers,
        valid until this generator's next forward (other networks may run in between)."""
        t0 = time.perf_counter()
        x, resized = self.model_input(image)
        preds, protos = self.forward(x, copy=False)
        if timings is not None:
            timings["masks_forward"] = (time.perf_counter() - t0) * 1e3
        return RawMasks(preds, protos, resized, image.shape[:2])

    def decode(self, raw: RawMasks, timings: dict[str, float] | None = None) -> MaskResult:
        """:meth:`postprocess` of :meth:`infer`'s outputs."""
        t0 = time.perf_counter()
        result = self.postprocess(raw.preds, raw.protos, raw.resized, raw.image_size)
        if timings is not None:
            timings["masks_post"] = (time.perf_counter() - t0) * 1e3
        return result


def _crop_to_boxes(logits: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``logits > 0``, zeroed outside each mask's xyxy box: separable row and column tests, no
    per-mask loop, no ``(N, h, w)`` temporaries. On the CPU in numpy (~6x faster than torch's
    broadcast bool ops, single-threaded)."""
    _, h, w = logits.shape
    if logits.device.type == "cpu":
        x1, y1, x2, y2 = (v[:, None] for v in boxes.numpy().astype(np.float32, copy=False).T)
        cols = np.arange(w, dtype=np.float32) + 0.5
        rows = np.arange(h, dtype=np.float32) + 0.5
        # bf16 > 0 exactly when its int16 bits are (sign bit clear, not zero): numpy has no bf16.
        masks = logits.view(torch.int16).numpy() > 0 if logits.dtype == torch.bfloat16 else logits.numpy() > 0
        masks &= ((cols >= x1) & (cols <= x2))[:, None, :]  # (N, 1, w)
        masks &= ((rows >= y1) & (rows <= y2))[:, :, None]  # (N, h, 1)
        return torch.from_numpy(masks)
    x1, y1, x2, y2 = boxes[:, :, None].unbind(1)
    cols = torch.arange(w, device=logits.device, dtype=boxes.dtype)[None, :] + 0.5
    rows = torch.arange(h, device=logits.device, dtype=boxes.dtype)[None, :] + 0.5
    masks = logits > 0
    masks &= ((cols >= x1) & (cols <= x2))[:, None, :]
    masks &= ((rows >= y1) & (rows <= y2))[:, :, None]
    return masks


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16, AMX or Arm BF16 in ``/proc/cpuinfo``,
    read once per process); elsewhere oneDNN emulates it, slower than fp32."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(words & {"avx512_bf16", "amx_bf16", "bf16"}) and torch.backends.mkldnn.is_available()


def load_tensorrt_engine(path: str, device: str):
    """A FastSAM TensorRT ``.engine`` (built by ``trtexec`` from :mod:`sfs_core.tensorrt`'s ONNX)
    behind ultralytics' ``AutoBackend``. Needs the ``tensorrt`` package and a CUDA GPU: neither
    exists on the CPU build machine, so only the errors below are tested there."""
    import importlib.util

    if not str(path).endswith(".engine"):
        raise ConfigError("masks.model", f"backend tensorrt loads a TensorRT .engine, got '{path}': export the ONNX with "
                          "`python -m sfs_core.tensorrt` and build the engine with trtexec (README: TensorRT)")
    if importlib.util.find_spec("tensorrt") is None:
        raise ConfigError("masks.backend", "tensorrt needs NVIDIA TensorRT's Python package and a CUDA GPU "
                          "(JetPack on Jetson, `pip install tensorrt` elsewhere); it is not installed here")
    if not torch.device(device).type == "cuda" or not torch.cuda.is_available():
        raise ConfigError("device", f"backend tensorrt runs on an NVIDIA GPU; device is '{device}' and CUDA is "
                          f"{'available' if torch.cuda.is_available() else 'not available'}")
    from ultralytics.nn.autobackend import AutoBackend

    return AutoBackend(path, device=torch.device(device), fp16=True, verbose=False)


def export_fastsam_onnx(checkpoint: str, target: Path) -> None:
    """ONNX export (dynamic input size, opset 18) of a FastSAM ``.pt`` with ultralytics' exporter.

    The exporter writes next to its input, so it works on a copy in a temporary folder.
    """
    from ultralytics import FastSAM

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / Path(checkpoint).name
        shutil.copy(checkpoint, copy)
        exported = FastSAM(str(copy)).export(format="onnx", dynamic=True, simplify=True, opset=18, verbose=False)
        shutil.move(str(exported), target)
