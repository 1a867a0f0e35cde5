"""The real architectures with random weights: loading, contracts (shapes, dtypes, ranges)."""

import numpy as np
import pytest
import torch
from tiny_segmenters import LABELS, build_mask2former, build_oneformer

from sfs_core.closed_set import ClosedSetSegmenter
from sfs_core.config import ClosedSetConfig, ConfigError
from sfs_core.masks import MaskGenerator, letterbox_size

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mask_generator(make_config):
    cfg = make_config({"masks.backend": "torch"})
    return MaskGenerator(cfg.masks)


def test_letterbox_keeps_aspect_and_pads_to_stride():
    assert letterbox_size(480, 640, 640) == (480, 640, 480, 640)
    assert letterbox_size(1080, 810, 640) == (640, 480, 640, 480)
    assert letterbox_size(720, 1280, 640) == (360, 640, 384, 640)
    assert letterbox_size(2, 7, 640) == (183, 640, 192, 640)


def test_mask_generator_contract(mask_generator, rgb_640x480):
    mask_generator.config.conf = 0.01  # random weights score ~0.012
    result = mask_generator(rgb_640x480)
    assert result.masks.dtype == torch.bool and result.masks.shape[1:] == (120, 160)
    n = len(result)
    assert 0 < n <= mask_generator.config.max_masks
    assert result.boxes.shape == (n, 4) and result.scores.shape == (n,)
    assert (result.scores[:-1] >= result.scores[1:]).all()  # sorted, best first
    assert (result.boxes[:, 0::2] <= 640).all() and (result.boxes[:, 1::2] <= 480).all()
    assert result.image_size == (480, 640)


def test_max_masks_keeps_top_n(mask_generator, rgb_640x480):
    mask_generator.config.conf, mask_generator.config.max_masks = 0.01, 7
    try:
        assert len(mask_generator(rgb_640x480)) == 7
    finally:
        mask_generator.config.max_masks = 100


def test_retina_masks_are_full_resolution_and_agree_with_low_res(mask_generator, rgb_640x480):
    mask_generator.config.conf = 0.01
    low = mask_generator(rgb_640x480)
    mask_generator.config.retina = True
    try:
        full = mask_generator(rgb_640x480)
    finally:
        mask_generator.config.retina = False
    assert full.masks.shape == (len(low), 480, 640)
    torch.testing.assert_close(full.boxes, low.boxes)
    up = torch.nn.functional.interpolate(low.masks[:, None].float(), size=(480, 640), mode="nearest")[:, 0] > 0.5
    assert (up == full.masks).float().mean() > 0.97


def test_high_conf_gives_no_masks(mask_generator, rgb_640x480):
    mask_generator.config.conf = 0.9
    try:
        result = mask_generator(rgb_640x480)
    finally:
        mask_generator.config.conf = 0.01
    assert len(result) == 0 and result.masks.shape == (0, 120, 160)


def test_segformer_class_map(random_models, rgb_640x480):
    seg = ClosedSetSegmenter(ClosedSetConfig(name="ade20k", model=str(random_models / "segformer-b0-ade20k"), backend="torch"))
    assert seg.model_type == "segformer" and len(seg.vocabulary) == 150 and seg.vocabulary[12] == "person"
    out = seg(rgb_640x480)
    assert out.class_map.shape == (128, 128) and out.class_map.dtype == torch.int64
    assert 0 <= int(out.class_map.min()) and int(out.class_map.max()) < 150


@pytest.mark.parametrize("builder, model_type", [(build_mask2former, "mask2former"), (build_oneformer, "oneformer")])
def test_query_based_segmenters_are_chosen_from_their_config(tmp_path, rgb_640x480, builder, model_type):
    folder = builder(tmp_path / model_type)
    seg = ClosedSetSegmenter(ClosedSetConfig(name="x", model=str(folder), input_size=256))
    assert seg.model_type == model_type and seg.vocabulary == LABELS
    out = seg(rgb_640x480)
    # short side 256 -> 256x341, padded to 256x352; output at 1/4 with the padding removed
    assert out.class_map.shape == (64, 85)
    assert int(out.class_map.max()) < len(LABELS)


def test_unsupported_model_type_names_the_parameter(tmp_path):
    from transformers import BertConfig

    BertConfig().save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="closed_set.bad.model.*unsupported model type 'bert'"):
        ClosedSetSegmenter(ClosedSetConfig(name="bad", model=str(tmp_path)))


def test_mask_generator_handles_tiny_images(mask_generator):
    for shape in ((1, 1, 3), (2, 7, 3)):
        result = mask_generator(np.zeros(shape, np.uint8))
        assert result.image_size == shape[:2]
