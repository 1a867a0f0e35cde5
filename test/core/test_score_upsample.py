"""closed_set.<name>.upsample: class scores upsampled bilinearly before the argmax, checked against
transformers' own SegFormer post-processing (an independent implementation of the same step)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from sfs_core.closed_set import ClosedSetSegmenter
from sfs_core.config import ConfigError
from sfs_core.labels import UNLABELED_ID

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def square_image(rgb_640x480):
    return np.ascontiguousarray(rgb_640x480[112:368, 192:448])  # 256x256: no resize, no padding


def _segmenter(make_config, backend: str, upsample: int, **changes) -> ClosedSetSegmenter:
    cfg = make_config()
    seg_cfg = replace(cfg.closed_set[0], backend=backend, input_size=256, upsample=upsample, **changes)
    return ClosedSetSegmenter(seg_cfg, device="cpu", cache_dir=cfg.cache_dir, precision="f32")


def test_upsampled_class_map_is_transformers_post_processing(make_config, square_image):
    from transformers import SegformerImageProcessor

    segmenter = _segmenter(make_config, "torch", 4)
    class_map = segmenter(square_image).class_map
    assert class_map.shape == (256, 256)
    x, _ = segmenter.preprocess(square_image)
    with torch.inference_mode():
        outputs = segmenter.model(pixel_values=x)
    reference = SegformerImageProcessor().post_process_semantic_segmentation(outputs, target_sizes=[(256, 256)])[0]
    assert (class_map == reference).float().mean() > 0.999
    plain = _segmenter(make_config, "torch", 1)(square_image).class_map
    assert plain.shape == (64, 64)
    assert (class_map[::4, ::4] != plain).any()  # the factor changes the map, not only its size


@pytest.mark.parametrize("augmentation", ["none", "rot90"])
def test_openvino_upsampled_map_agrees_with_torch(make_config, square_image, augmentation):
    """The exported runner's channels-last scores take the same path as torch's planar ones."""
    maps = [_segmenter(make_config, backend, 2, test_augmentation=augmentation)(square_image).class_map
            for backend in ("torch", "openvino")]
    assert maps[0].shape == maps[1].shape == (128, 128)
    assert (maps[0] == maps[1]).float().mean() > 0.99


def test_pipeline_runs_with_an_upsampled_fill(make_config, rgb_640x480):
    from sfs_core.pipeline import Pipeline

    pipeline = Pipeline(make_config({"closed_set.ade20k.upsample": 4}))
    result = pipeline.process(rgb_640x480)
    assert result.label_map.shape == (480, 640)
    assert (result.label_map == UNLABELED_ID).sum() == 0  # the fill covers every uncovered pixel


@pytest.mark.parametrize("factor", [0, 9])
def test_upsample_outside_its_range_is_rejected(make_config, factor):
    cfg = make_config({"closed_set.ade20k.upsample": factor})
    with pytest.raises(ConfigError, match="closed_set.ade20k.upsample"):
        cfg.validate()
