"""TensorRT preparation, the parts that run without a GPU: the static-shape ONNX files (same
network and raw outputs as torch), the printed trtexec commands, and clear errors."""

import importlib.util

import pytest
import torch

from sfs_core import tensorrt
from sfs_core.config import ConfigError
from sfs_core.masks import MaskGenerator, load_tensorrt_engine


def test_trtexec_command():
    assert tensorrt.trtexec_command("a/m.onnx", "a/m.engine") == ["trtexec", "--onnx=a/m.onnx", "--saveEngine=a/m.engine", "--fp16"]
    assert tensorrt.trtexec_command("m.onnx", "m.engine", fp16=False)[-1] == "--saveEngine=m.engine"


@pytest.mark.slow
def test_export_writes_static_onnx_that_matches_torch(make_config, random_config, rgb_640x480, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    out = tmp_path / "engines"
    from sfs_core.cli import main

    assert main(["models", "export", "--backend", "tensorrt", "--config", str(random_config), "--out", str(out),
                 "--image-size", "640x480"]) == 0
    printed = capsys.readouterr().out
    fastsam, segformer = out / "FastSAM-s_640x480.onnx", out / "ade20k_segformer-b0-ade20k_512x512.onnx"
    for path in (fastsam, segformer):
        assert f"trtexec --onnx={path} --saveEngine={path.with_suffix('.engine')} --fp16" in printed
    assert "masks.backend: tensorrt" in printed

    def static_dims(values):
        return [[d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim] for v in values]

    model = onnx.load(str(fastsam))
    assert static_dims(model.graph.input) == [[1, 3, 480, 640]]
    assert [o.name for o in model.graph.output] == ["output0", "output1"]
    assert all(None not in dims for dims in static_dims(model.graph.output))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) == tensorrt.TRT_OPSET
    assert static_dims(onnx.load(str(segformer)).graph.input) == [[1, 3, 512, 512]]

    # The same raw tensors as the torch network: our post-processing reads them unchanged.
    cfg = make_config({"masks.backend": "torch"})
    gen = MaskGenerator(cfg.masks)
    x, _ = gen.preprocess(rgb_640x480)
    ref_preds, ref_protos = gen.forward(x)
    preds, protos = ort.InferenceSession(str(fastsam), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(preds), ref_preds, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(torch.from_numpy(protos), ref_protos, atol=1e-3, rtol=1e-3)

    from sfs_core.closed_set import ClosedSetSegmenter

    seg_cfg = cfg.closed_set[0]
    seg_cfg.backend = "torch"
    seg = ClosedSetSegmenter(seg_cfg)
    xs, _ = seg.preprocess(rgb_640x480)
    (logits,) = ort.InferenceSession(str(segformer), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": xs.numpy()})
    assert logits.shape == (1, 150, 128, 128)
    assert (torch.from_numpy(logits[0].argmax(0)) == seg(rgb_640x480).class_map).float().mean() >= 0.999


def test_tensorrt_backend_is_checked_by_the_config(make_config):
    cfg = make_config({"masks.backend": "tensorrt"})
    with pytest.raises(ConfigError, match="'masks.backend': tensorrt runs on an NVIDIA GPU: set device cuda"):
        cfg.validate(check_files=False)
    cfg.device = "cuda"
    cfg.validate(check_files=False)  # accepted on a GPU
    cfg.closed_set[0].backend = "tensorrt"
    with pytest.raises(ConfigError, match=r"closed_set\.ade20k\.backend.*tensorrt: masks.backend only"):
        cfg.validate(check_files=False)


def test_tensorrt_engine_loading_fails_clearly_without_tensorrt(monkeypatch, tmp_path):
    engine = tmp_path / "FastSAM-s_640x480.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(ConfigError, match="'masks.model': backend tensorrt loads a TensorRT .engine"):
        load_tensorrt_engine(str(tmp_path / "FastSAM-s.onnx"), "cuda")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match="'masks.backend': tensorrt needs NVIDIA TensorRT's Python package"):
        load_tensorrt_engine(str(engine), "cuda")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorrt" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match="'device': backend tensorrt runs on an NVIDIA GPU"):
        load_tensorrt_engine(str(engine), "cpu")


def test_engine_size_mismatch_names_the_fix():
    """forward() around a stand-in engine (no TensorRT here): a static-shape refusal becomes a clear error."""
    gen = MaskGenerator.__new__(MaskGenerator)
    gen.runner = None

    def static_engine(x):
        raise AssertionError(f"input size {tuple(x.shape)} not equal to max model size (1, 3, 480, 640)")

    gen.engine = static_engine
    with pytest.raises(ValueError, match=r"built for another camera size; rebuild it .*--image-size WxH"):
        gen.forward(torch.zeros(1, 3, 384, 640))
    gen.engine = lambda x: [torch.ones(1, 37, 6), torch.zeros(1, 32, 120, 160)]
    preds, protos = gen.forward(torch.zeros(1, 3, 480, 640))
    assert preds.shape == (1, 37, 6) and protos.shape == (1, 32, 120, 160)


def test_cli_tensorrt_export_needs_an_output_folder(random_config, capsys):
    from sfs_core.cli import main

    assert main(["models", "export", "--backend", "tensorrt", "--config", str(random_config)]) == 2
    assert "--backend tensorrt needs --out FOLDER" in capsys.readouterr().err


def test_module_entry_point_is_the_cli_command(random_config, capsys):
    assert tensorrt.main(["--config", str(random_config)]) == 2  # python -m sfs_core.tensorrt, no --out
    assert "--backend tensorrt needs --out FOLDER" in capsys.readouterr().err
