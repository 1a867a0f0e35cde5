"""Exported backends agree with torch, exports are cached, and the low-resolution path agrees
with the full-resolution (retina) path."""

import numpy as np
import pytest
import torch

from sfs_core.backends import ExportedRunner, checkpoint_digest, resolve_backend
from sfs_core.closed_set import ClosedSetSegmenter
from sfs_core.masks import MaskGenerator
from sfs_core.pipeline import Pipeline

pytestmark = pytest.mark.slow


def runtime(cfg, precision="auto"):
    return dict(device="cpu", cache_dir=cfg.cache_dir, threads=0, precision=precision)


def raw_masks(generator, image):
    x, _ = generator.model_input(image)
    return generator.forward(x)


@pytest.fixture(scope="module")
def torch_masks(make_config):
    cfg = make_config({"masks.backend": "torch"})
    return MaskGenerator(cfg.masks, **runtime(cfg))


@pytest.mark.parametrize("backend, precision, atol", [("onnxruntime", "auto", 1e-3), ("openvino", "f32", 1e-3)])
def test_fastsam_exports_match_torch(make_config, torch_masks, rgb_640x480, backend, precision, atol):
    cfg = make_config({"masks.backend": backend})
    exported = MaskGenerator(cfg.masks, **runtime(cfg, precision))
    assert exported.runner is not None and exported.runner.backend == backend
    ref_preds, ref_protos = raw_masks(torch_masks, rgb_640x480)
    preds, protos = raw_masks(exported, rgb_640x480)
    torch.testing.assert_close(preds, ref_preds, atol=atol, rtol=1e-3)
    torch.testing.assert_close(protos, ref_protos, atol=atol, rtol=1e-3)


def test_openvino_half_precision_masks_agree(make_config, torch_masks, rgb_640x480):
    """``half``: OpenVINO's default picks bf16 where the CPU has it: compare binary masks, not
    logits. (``auto`` adds int8 quantization: test_quantize.py.)"""
    cfg = make_config({"masks.backend": "openvino"})
    fast = MaskGenerator(cfg.masks, **runtime(cfg, "half"))
    torch_masks.config.conf = fast.config.conf = 0.01
    ref, out = torch_masks(rgb_640x480), fast(rgb_640x480)
    assert len(out) == len(ref)
    boxes_close = (out.boxes - ref.boxes).abs().max() < 4.0
    agree = (out.masks == ref.masks).float().mean()
    assert boxes_close and agree > 0.97, (agree, boxes_close)


def identity_onnx(path):
    """An ONNX network returning its float NCHW input: it shows exactly what a runner feeds a network."""
    import onnx
    from onnx import TensorProto, helper

    dims = ["n", 3, "h", "w"]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("stage", ["masks", "closed_set"])
def test_openvino_pixel_input_is_the_float_preprocessing(make_config, rgb_640x480, tmp_path, stage):
    """OpenVINO takes uint8 pixels and normalises them in its graph: behind an identity network,
    the stage's normalisation gives the float input of its numpy preprocessing (random-weight
    FastSAM hardly reacts to its input, so the real network could not show an error), and the
    real network runs on the pixels."""
    cfg = make_config({"masks.backend": "openvino"})
    if stage == "masks":
        model = MaskGenerator(cfg.masks, **runtime(cfg, "f32"))
    else:
        model = ClosedSetSegmenter(cfg.closed_set[0], **runtime(cfg, "f32"))
    pixels, region = model.model_input(rgb_640x480)
    x, float_region = model.preprocess(rgb_640x480)
    assert model.runner.pixel_input is not None and pixels.dtype == np.uint8 and pixels.shape == (1, *x.shape[2:], 3)
    assert region == float_region
    identity = ExportedRunner(identity_onnx(tmp_path / "identity.onnx"), "openvino", precision="f32", pixel_input=model.runner.pixel_input)
    np.testing.assert_allclose(identity(pixels)[0], x.numpy(), rtol=1e-6, atol=1e-6)
    assert all(np.isfinite(out).all() for out in model.runner(pixels))


def test_raw_masks_survive_the_closed_set_forward(make_config, rgb_640x480):
    """The pipeline runs the closed set between FastSAM's forward and its post-processing, on
    outputs left in OpenVINO's buffers: they must be what decoding at once gives."""
    cfg = make_config({"masks.conf": 0.001})
    pipeline = Pipeline(cfg)
    generator, segmenter = pipeline.mask_generator, pipeline.segmenters[0]
    assert generator.runner is not None and segmenter.runner is not None
    ref = generator(rgb_640x480)
    raw = generator.infer(rgb_640x480)
    segmenter(rgb_640x480[::-1].copy())  # another image through the other network
    out = generator.decode(raw)
    assert len(ref) > 0 and torch.equal(out.masks, ref.masks) and torch.equal(out.boxes, ref.boxes)


def test_bf16_mask_product_agrees_with_float(torch_masks, rgb_640x480):
    """``precision`` auto/half on a CPU with native bf16: the mask-coefficient product runs in
    bf16. Same detections, masks equal but for pixels at the zero crossing."""
    from sfs_core.masks import _cpu_has_bf16

    assert torch_masks.bf16_product == _cpu_has_bf16()
    x, resized = torch_masks.model_input(rgb_640x480)
    preds, protos = torch_masks.forward(x)
    torch_masks.config.conf = 0.001  # 100 masks from the random weights
    try:
        torch_masks.bf16_product = True
        fast = torch_masks.postprocess(preds, protos, resized, rgb_640x480.shape[:2])
        torch_masks.bf16_product = False
        ref = torch_masks.postprocess(preds, protos, resized, rgb_640x480.shape[:2])
    finally:
        torch_masks.bf16_product, torch_masks.config.conf = _cpu_has_bf16(), 0.01
    assert len(ref) == len(fast) == torch_masks.config.max_masks and torch.equal(fast.boxes, ref.boxes)
    assert (fast.masks == ref.masks).float().mean() > 0.999


@pytest.mark.parametrize("backend, precision, min_agreement", [("onnxruntime", "auto", 0.999), ("openvino", "f32", 0.999), ("openvino", "auto", 0.97)])
def test_segformer_exports_match_torch(make_config, rgb_640x480, backend, precision, min_agreement):
    cfg = make_config()
    seg_cfg = cfg.closed_set[0]
    seg_cfg.backend = "torch"
    ref = ClosedSetSegmenter(seg_cfg, **runtime(cfg)).__call__(rgb_640x480).class_map
    seg_cfg.backend = backend
    seg = ClosedSetSegmenter(seg_cfg, **runtime(cfg, precision))
    assert seg.runner is not None and not hasattr(seg, "model")  # torch weights freed
    assert seg.runner.channels_last == (backend == "openvino")  # OpenVINO: (h, w, C) scores, argmax along rows
    out = seg(rgb_640x480).class_map
    assert out.shape == ref.shape
    assert (out == ref).float().mean() >= min_agreement


def test_exports_are_cached_and_keyed_by_content(make_config, tmp_path, monkeypatch):
    import sfs_core.closed_set as closed_set

    cfg = make_config({"cache_dir": str(tmp_path)})
    seg_cfg = cfg.closed_set[0]
    seg_cfg.backend = "onnxruntime"
    ClosedSetSegmenter(seg_cfg, **runtime(cfg))
    files = sorted((tmp_path / "exports").glob("*.onnx"))
    assert len(files) == 1 and checkpoint_digest(seg_cfg.model) in files[0].name
    calls = []
    monkeypatch.setattr(closed_set, "export_segformer_onnx", lambda *a: calls.append(a))
    ClosedSetSegmenter(seg_cfg, **runtime(cfg))  # a restart reuses the export
    assert calls == []


def test_auto_backend_resolution():
    assert resolve_backend("auto", "cpu") == "openvino"
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("auto", "cpu", exportable=False) == "torch"
    assert resolve_backend("onnxruntime", "cpu") == "onnxruntime"


def test_default_pipeline_agrees_with_torch(make_config, rgb_640x480):
    ref = Pipeline(make_config({"masks.backend": "torch", "closed_set.ade20k.backend": "torch"})).process(rgb_640x480)
    fast = Pipeline(make_config()).process(rgb_640x480)
    assert (fast.label_map == ref.label_map).mean() >= 0.97


def test_low_resolution_path_agrees_with_full_resolution(make_config, rgb_640x480):
    """Issue 6: voting and painting at prototype resolution, upsampled once, stays within
    tolerance of the full-resolution (retina) path."""
    overrides = {"masks.backend": "torch", "closed_set.ade20k.backend": "torch"}
    low = Pipeline(make_config(overrides)).process(rgb_640x480)
    full = Pipeline(make_config({**overrides, "masks.retina": True})).process(rgb_640x480)
    agreement = (low.label_map == full.label_map).mean()
    assert agreement >= 0.95, agreement
    assert len(low.masks) > 0 and np.abs(len(low.masks) - len(full.masks)) <= max(2, len(full.masks) // 5)


@pytest.mark.parametrize("image_size, resized, padded", [((480, 640), (480, 640), (480, 640)), ((720, 1280), (360, 640), (384, 640))])
def test_low_res_masks_match_retina_masks_on_smooth_prototypes(torch_masks, image_size, resized, padded):
    """Hand-made raw outputs with object-like prototypes (random weights give almost empty
    masks): masks cut at prototype resolution, upsampled once, match the retina masks,
    letterbox padding included."""
    (ph, pw), count = (padded[0] // 4, padded[1] // 4), 6
    yy, xx = torch.meshgrid(torch.arange(ph, dtype=torch.float32) + 0.5, torch.arange(pw, dtype=torch.float32) + 0.5, indexing="ij")
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(count, 2, generator=gen) * torch.tensor([resized[1] / 4 - 40, resized[0] / 4 - 40]) + 20
    radii = torch.rand(count, generator=gen) * 12 + 8
    protos = torch.full((1, 32, ph, pw), -1.0)
    dist = ((xx - centres[:, 0, None, None]) ** 2 + (yy - centres[:, 1, None, None]) ** 2).sqrt()
    protos[0, :count] = (radii[:, None, None] - dist) / radii[:, None, None]  # > 0 inside each disc
    preds = torch.zeros(1, 4 + 1 + 32, 64)  # 64 anchors, `count` of them scored
    preds[0, 0:2, :count] = (centres * 4).T  # box centre (xywh) in 640x480 input pixels
    preds[0, 2:4, :count] = (radii * 8 + 8).repeat(2, 1)
    preds[0, 4, :count] = torch.linspace(0.9, 0.5, count)
    preds[0, 5 : 5 + count, :count] = torch.eye(count)  # mask k = prototype k
    torch_masks.config.conf = 0.1
    low = torch_masks.postprocess(preds, protos, resized, image_size)
    torch_masks.config.retina = True
    try:
        full = torch_masks.postprocess(preds, protos, resized, image_size)
    finally:
        torch_masks.config.retina, torch_masks.config.conf = False, 0.01
    up = torch.nn.functional.interpolate(low.masks[:, None].float(), size=image_size, mode="nearest-exact")[:, 0] > 0.5
    inter = (up & full.masks).sum((1, 2)).float()
    union = (up | full.masks).sum((1, 2)).float()
    assert len(low) == count and (full.masks.sum((1, 2)) > 1000).all()
    assert (inter / union).min() > 0.9
    assert (up == full.masks).float().mean() > 0.99
