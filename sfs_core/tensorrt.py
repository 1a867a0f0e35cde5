"""TensorRT preparation (NVIDIA GPUs, Jetson): static-shape ONNX files and the ``trtexec``
commands that turn them into engines on the target machine.

Nothing here needs TensorRT or a GPU: this module writes ONNX files (checked in the tests on the
CPU build machine) and prints the commands. Building an engine (``trtexec``) and running it
(``masks.backend: tensorrt``, :class:`sfs_core.masks.MaskGenerator`) happen on the GPU machine and
are **untested here** (no GPU, no TensorRT).

Engines are built for one input shape, so the FastSAM ONNX is exported for the camera's
letterboxed size (640x480 at ``imgsz`` 640 -> ``1x3x480x640``); SegFormer's input is always
``input_size`` squared. Mask2Former and OneFormer are not exported (their ONNX graphs are not
supported here); keep them on ``backend: torch`` (fp16 on CUDA).

    python -m sfs_core.tensorrt --config config/sfs.yaml --out engines/ --image-size 640x480
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: ONNX opset for TensorRT 8.6+ (JetPack 6) and 10.x.
TRT_OPSET = 17


@dataclass
class EnginePlan:
    """One network to build: its static-shape ONNX file, the engine to write, the command."""

    name: str
    onnx: Path
    engine: Path
    input_shape: tuple[int, int, int, int]
    fp16: bool = True

    @property
    def command(self) -> list[str]:
        return trtexec_command(self.onnx, self.engine, self.fp16)


def trtexec_command(onnx: Path, engine: Path, fp16: bool = True) -> list[str]:
    """``trtexec`` arguments that build ``engine`` from a static-shape ``onnx``."""
    return ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", *(["--fp16"] if fp16 else [])]


def export_fastsam_static_onnx(checkpoint: str, target: Path, shape: tuple[int, int]) -> None:
    """FastSAM ``.pt`` -> ONNX with a fixed ``(1, 3, H, W)`` input (``shape`` = letterboxed
    ``(H, W)``, multiples of 32), through ultralytics' exporter: no dynamic axes, simplified,
    fp32 weights (``trtexec --fp16`` chooses the precision), outputs ``output0`` (boxes, scores,
    mask coefficients) and ``output1`` (prototypes), the raw tensors our post-processing reads."""
    from ultralytics import FastSAM

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / Path(checkpoint).name
        shutil.copy(checkpoint, copy)
        exported = FastSAM(str(copy)).export(
            format="onnx", imgsz=list(shape), dynamic=False, simplify=True, opset=TRT_OPSET, half=False, batch=1, verbose=False,
        )
        shutil.move(str(exported), target)


def export_for_tensorrt(config, out_dir: Path, image_size: tuple[int, int] = (480, 640), fp16: bool = True) -> tuple[list[EnginePlan], list[str]]:
    """Write the static-shape ONNX files of ``config``'s FastSAM and SegFormer models into
    ``out_dir``. Returns the engine plans and the names of segmenters left out (query-based)."""
    from transformers import AutoConfig

    from sfs_core.closed_set import _load_model, export_segformer_onnx
    from sfs_core.masks import letterbox_size

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plans: list[EnginePlan] = []
    _, _, pad_h, pad_w = letterbox_size(*image_size, config.masks.imgsz)
    stem = f"{Path(config.masks.model).stem}_{pad_w}x{pad_h}"
    onnx = out_dir / f"{stem}.onnx"
    checkpoint = config.masks.model
    if not Path(checkpoint).is_file():  # a release name: ultralytics resolves (downloads) it
        from ultralytics import FastSAM

        checkpoint = getattr(FastSAM(checkpoint), "ckpt_path", None) or checkpoint
    export_fastsam_static_onnx(checkpoint, onnx, (pad_h, pad_w))
    plans.append(EnginePlan("masks", onnx, out_dir / f"{stem}.engine", (1, 3, pad_h, pad_w), fp16))
    skipped = []
    for seg in config.closed_set:
        if AutoConfig.from_pretrained(seg.model).model_type != "segformer":
            skipped.append(seg.name)
            continue
        size = seg.input_size
        onnx = out_dir / f"{seg.name}_{Path(seg.model).name}_{size}x{size}.onnx"
        export_segformer_onnx(_load_model("segformer", seg.model).eval(), size, onnx)
        plans.append(EnginePlan(f"closed_set.{seg.name}", onnx, onnx.with_suffix(".engine"), (1, 3, size, size), fp16))
    return plans, skipped


def describe(plans: list[EnginePlan], skipped: list[str]) -> str:
    """The instructions printed after an export."""
    lines = ["ONNX files for TensorRT (static shapes):"]
    lines += [f"  {p.name}: {p.onnx}  input {'x'.join(map(str, p.input_shape))}" for p in plans]
    lines += ["", "On the GPU machine (TensorRT installed; on Jetson: /usr/src/tensorrt/bin/trtexec), build the engines:"]
    lines += [f"  {shlex.join(p.command)}" for p in plans]
    masks = plans[0]
    lines += ["", "Then point the config at the FastSAM engine (same camera size as above):",
              f"  device: cuda\n  masks.model: {masks.engine}\n  masks.backend: tensorrt",
              "SegFormer engines are built for your own TensorRT runtime; the pipeline runs SegFormer with",
              "backend torch (fp16) on the GPU."]
    if skipped:
        lines += [f"Not exported (query-based models; keep backend torch on the GPU): {', '.join(skipped)}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m sfs_core.tensorrt ARGS``: the same as ``sfs models export --backend tensorrt ARGS``."""
    from sfs_core.cli import main as sfs_main

    return sfs_main(["models", "export", "--backend", "tensorrt", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
