"""closed_set.<name>.test_augmentation: scores averaged over flipped or turned views of the input,
each turned back. Averaged over the whole group, the segmenter becomes exactly equivariant: a
mirrored (turned) image gives the mirrored (turned) class map, which a single view does not."""

from dataclasses import replace

import numpy as np
import pytest

from sfs_core.closed_set import ClosedSetSegmenter
from sfs_core.config import ConfigError

pytestmark = pytest.mark.slow

VIEWS = {"hflip": [lambda a: a[:, ::-1]], "rot90": [lambda a, k=k: np.rot90(a, k) for k in (1, 2, 3)]}


def agreement(segmenter, image, view) -> float:
    """Share of pixels where segmenting the view of ``image`` equals the view of its class map."""
    ref = segmenter(image).class_map.numpy()
    out = segmenter(np.ascontiguousarray(view(image))).class_map.numpy()
    return float((out == view(ref)).mean())


@pytest.mark.parametrize("backend", ["torch", "openvino"])
@pytest.mark.parametrize("augmentation", ["hflip", "rot90"])
def test_augmented_segmenter_is_equivariant(make_config, rgb_640x480, backend, augmentation):
    cfg = make_config()
    seg_cfg = cfg.closed_set[0]
    seg_cfg.backend, seg_cfg.input_size = backend, 256
    image = np.ascontiguousarray(rgb_640x480[112:368, 192:448])  # 256x256: the segmenter's resize is a copy
    runtime = dict(device="cpu", cache_dir=cfg.cache_dir, precision="f32")
    plain = ClosedSetSegmenter(seg_cfg, **runtime)
    augmented = ClosedSetSegmenter(replace(seg_cfg, test_augmentation=augmentation), **runtime)
    for view in VIEWS[augmentation]:
        with_views, single = agreement(augmented, image, view), agreement(plain, image, view)
        assert with_views > 0.999 and single < 0.99, (with_views, single)
    assert augmented(image).class_map.shape == plain(image).class_map.shape == (64, 64)


def test_unknown_augmentation_is_rejected(make_config):
    cfg = make_config({"closed_set.ade20k.test_augmentation": "rot45"})
    with pytest.raises(ConfigError, match="closed_set.ade20k.test_augmentation"):
        cfg.validate()
