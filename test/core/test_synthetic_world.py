"""The synthetic world: deterministic scenes whose instance and semantic ground truth agree."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from sfs_core.synthetic.recipes import STAGES, ClipRecipe, DataRecipe, SyntheticRecipe, recipe_key, stage_key
from sfs_core.synthetic.scenes import ObjectSpec, SceneConfig, SceneSpec, render, sample_scene, sample_sequence
from sfs_core.synthetic.shapes import CLASS_NAMES, SHAPE_CLASSES, shape_contours
from sfs_core.synthetic.yolo_dataset import mask_to_polygon

SMALL = SceneConfig(sizes=((96, 128), (128, 128)))


def _object(shape: str, center, radius: float, **kw) -> ObjectSpec:
    return ObjectSpec(shape=shape, center=center, radius=radius, angle=kw.get("angle", 0.3), inner_ratio=kw.get("inner_ratio", 0.5),
                      color="red", rgb=(220.0, 30.0, 30.0), texture=kw.get("texture", "solid"), texture_seed=1)


def test_same_seed_same_scene_different_seed_different_scene():
    a, b = render(sample_scene(7, SMALL)), render(sample_scene(7, SMALL))
    assert sample_scene(7, SMALL) == sample_scene(7, SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.instance_map, b.instance_map)
    c = render(sample_scene(8, SMALL))
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(12))
def test_ground_truth_is_consistent(seed):
    spec = sample_scene(seed)
    scene = render(spec)
    height, width = spec.size
    assert scene.image.shape == (height, width, 3) and scene.image.dtype == np.uint8
    assert scene.instance_map.dtype == np.uint16 and scene.semantic_map.dtype == np.uint8
    # the semantic map is the instance map seen through each object's class
    lut = np.array([0] + [o.class_id for o in scene.objects])
    assert np.array_equal(scene.semantic_map, lut[scene.instance_map])
    masks = scene.instance_masks()
    assert masks.shape == (len(scene.objects), height, width)
    assert (masks.sum(0) <= 1).all() and np.array_equal(masks.any(0), scene.instance_map > 0)
    assert SceneConfig().min_objects <= len(scene.objects) <= SceneConfig().max_objects
    # every object keeps at least min_visible of its (clipped) area: occlusion is partial
    for k, obj in enumerate(scene.objects):
        full, (x0, y0, x1, y1) = obj.mask(spec.size)
        visible = masks[k, y0:y1, x0:x1]
        assert not (visible & ~full).any(), "an object is visible outside its own outline"
        assert visible.sum() >= SceneConfig().min_visible * full.sum() - 1


def test_occlusion_follows_painters_order_and_ring_holes_show_what_is_below():
    below = _object("square", (60.0, 60.0), 40.0, angle=0.0)
    ring = _object("ring", (60.0, 60.0), 30.0, inner_ratio=0.5)
    top = _object("triangle", (95.0, 60.0), 20.0)
    scene = render(SceneSpec(size=(120, 140), background_seed=0, noise_seed=0, objects=(below, ring, top)))
    masks = scene.instance_masks()
    top_full = top.mask((120, 140))[0]
    x0, y0 = top.mask((120, 140))[1][:2]
    assert np.array_equal(masks[2, y0 : y0 + top_full.shape[0], x0 : x0 + top_full.shape[1]], top_full)
    assert not (masks[0] & masks[2]).any() and not (masks[1] & masks[2]).any()
    assert scene.instance_map[60, 60] == 1, "the ring's hole shows the square below it"
    assert scene.semantic_map[60, 60] == CLASS_NAMES.index("square")
    assert scene.semantic_map[60, 60 - 24] == CLASS_NAMES.index("ring")
    assert scene.semantic_map[5, 5] == 0


def test_all_classes_and_colours_occur():
    specs = [sample_scene(seed) for seed in range(40)]
    shapes = {o.shape for s in specs for o in s.objects}
    assert shapes == set(SHAPE_CLASSES)
    assert len({o.color for s in specs for o in s.objects}) >= 8
    assert len({o.texture for s in specs for o in s.objects}) == 5
    assert render(specs[0]).class_names == CLASS_NAMES == ("background", *SHAPE_CLASSES)


def test_sequence_moves_objects_smoothly():
    specs = sample_sequence(3, 6, SMALL)
    assert len(specs) == 6 and specs[0].objects[0].center == sample_scene(3, SMALL).objects[0].center
    first, last = render(specs[0]), render(specs[-1])
    assert [o.shape for o in specs[0].objects] == [o.shape for o in specs[-1].objects]
    assert specs[0].noise_seed != specs[1].noise_seed
    short = min(specs[0].size)
    for a, b in zip(specs[0].objects, specs[1].objects):
        assert abs(a.center[0] - b.center[0]) <= 0.015 * short + 1e-6
    assert not np.array_equal(first.instance_map, last.instance_map)


def test_validation_of_bad_configs():
    with pytest.raises(ValueError, match="unknown shape"):
        shape_contours("hexagon", (0, 0), 1, 0)
    with pytest.raises(ValueError):
        SceneConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError):
        SceneConfig(classes=("circle", "kite"))
    with pytest.raises(ValueError):
        DataRecipe(novel_classes=("kite",))


def test_yolo_polygon_reproduces_holes_and_pieces():
    mask = np.zeros((80, 100), np.uint8)
    cv2.circle(mask, (30, 40), 20, 1, -1)
    cv2.circle(mask, (30, 40), 9, 0, -1)  # a hole
    cv2.rectangle(mask, (65, 10), (90, 30), 1, -1)  # a second piece
    polygon = mask_to_polygon(mask.astype(bool))
    drawn = np.zeros_like(mask)
    cv2.fillPoly(drawn, [np.round(polygon).astype(np.int32)], 1)
    iou = (drawn & mask).sum() / (drawn | mask).sum()
    assert iou > 0.93 and drawn[40, 30] == 0
    assert mask_to_polygon(np.zeros((5, 5), bool)) is None


def test_recipe_keys_track_every_ingredient():
    recipe = SyntheticRecipe()
    keys = {stage: stage_key(recipe, stage) for stage in STAGES}
    assert keys == {stage: stage_key(SyntheticRecipe(), stage) for stage in STAGES}
    assert len(set(keys.values())) == 3
    changed = dataclasses.replace(recipe, clip=ClipRecipe(steps=1))
    assert stage_key(changed, "clip") != keys["clip"]
    assert stage_key(changed, "masks") == keys["masks"], "a CLIP change must not retrain the masks"
    assert recipe_key(changed) != recipe_key(recipe)
    assert stage_key(dataclasses.replace(recipe, data=DataRecipe(train_scenes=5)), "masks") != keys["masks"]
    assert recipe.data.known_classes == ("background", "circle", "square", "triangle", "ring")
