"""Issue 6, the low-resolution path: what is computed before the one upsample per frame equals
what the full-resolution maps give, exactly."""

from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_segmenters import build_mask2former

from sfs_core.closed_set import ClosedSetSegmenter, argmax_channels
from sfs_core.config import ClosedSetConfig
from sfs_core.fusion import paint_instances, vote
from sfs_core.overlap import as_int8, overlap_counts, pixel_counts
from sfs_core.pipeline import compose_maps, instance_stats
from sfs_core.tracking import Tracker
from sfs_core.upsample import NearestUpsample, nearest_index

# (small, output): integer factors, odd ratios, identity, and downscales (empty blocks).
SIZES = [((120, 160), (480, 640)), ((7, 5), (13, 11)), ((120, 160), (1080, 810)), ((90, 160), (720, 1280)),
         ((121, 161), (333, 999)), ((30, 40), (30, 40)), ((9, 9), (4, 6)), ((46, 160), (2, 7))]


def blobs(shape, count, seed):
    """A small instance map of ``count`` overlapping rectangles (ids 1..count), some of them hidden."""
    rng = np.random.default_rng(seed)
    h, w = shape
    out = np.zeros(shape, np.int64)
    for k in range(1, count + 1):
        y, x = rng.integers(0, h), rng.integers(0, w)
        out[y : y + rng.integers(1, h // 2 + 2), x : x + rng.integers(1, w // 2 + 2)] = k
    return out


def upsample_ref(small: np.ndarray, size) -> np.ndarray:
    """Reference nearest upsample by fancy indexing with the centre-aligned index maps."""
    return small[np.ix_(nearest_index(small.shape[0], size[0]), nearest_index(small.shape[1], size[1]))]


def test_nearest_index_is_pixel_centre_aligned():
    for size_in, size_out in [(2, 41), (10, 205), (128, 480), (120, 1080), (9, 4), (5, 5)]:
        expected = [min(int(Fraction(2 * d + 1, 2) * Fraction(size_in, size_out)), size_in - 1) for d in range(size_out)]
        assert nearest_index(size_in, size_out).tolist() == expected


@pytest.mark.parametrize("small_size, size", SIZES)
def test_stats_before_the_upsample_equal_stats_of_the_upsampled_map(small_size, size):
    up = NearestUpsample(small_size, size)
    for seed, count in [(0, 1), (1, 6), (2, 40)]:
        small = blobs(small_size, count, seed)
        big = up(small)
        assert big.dtype == small.dtype and np.array_equal(big, upsample_ref(small, size))
        fast, ref = up.stats(small, count), instance_stats(torch.from_numpy(big), count)
        assert np.array_equal(fast["area"], ref["area"].numpy())
        seen = fast["area"] > 0
        if small_size[0] <= size[0] and small_size[1] <= size[1]:  # an upsample keeps every id
            assert np.array_equal(seen, np.isin(np.arange(1, count + 1), small))
        assert np.array_equal(fast["bbox"][seen], ref["bbox"].numpy()[seen])
        assert np.array_equal(fast["centroid"][seen], ref["centroid"].numpy()[seen])  # exact, not approximate


@pytest.mark.parametrize("small_size, size", [((120, 160), (480, 640)), ((90, 160), (720, 1280)), ((128, 128), (480, 640))])
def test_upsample_equals_torch_nearest_exact_on_the_pipeline_sizes(small_size, size):
    small = blobs(small_size, 30, 3)
    ref = F.interpolate(torch.from_numpy(small).float()[None, None], size=size, mode="nearest-exact")[0, 0].long().numpy()
    assert np.array_equal(NearestUpsample(small_size, size)(small), ref)


def test_compose_maps_matches_the_full_resolution_composition():
    """The published maps and records, built small and upsampled once, equal painting the
    upsampled instance map and measuring it at full resolution."""
    small_size, size = (30, 40), (97, 131)
    instances = torch.from_numpy(blobs(small_size, 12, 4))
    class_ids = np.arange(100, 112)
    fill = torch.from_numpy(np.random.default_rng(5).integers(2, 9, (16, 16)))
    label_map, instance_map, visible, stats = compose_maps(instances, class_ids, fill, size)
    big = upsample_ref(instances.numpy(), size)
    kept = sorted(set(np.unique(big).tolist()) - {0})
    assert (visible + 1).tolist() == kept and len(kept) < 12  # some masks are hidden
    renumber = np.zeros(13, np.int64)
    renumber[kept] = np.arange(1, len(kept) + 1)
    assert np.array_equal(instance_map, renumber[big])
    assert instance_map.dtype == label_map.dtype == np.uint16
    expected = np.where(big > 0, class_ids[np.maximum(big - 1, 0)], upsample_ref(fill.numpy(), size))
    assert np.array_equal(label_map, expected)
    ref = instance_stats(torch.from_numpy(instance_map.astype(np.int64)), len(kept))
    assert np.array_equal(stats["area"], ref["area"].numpy()) and np.array_equal(stats["bbox"], ref["bbox"].numpy())
    assert np.array_equal(stats["centroid"], ref["centroid"].numpy())


def test_argmax_channels_equals_argmax_ties_included():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((150, 33, 47)).astype(np.float32)
    scores[7, :5] = scores[3, :5] = 9.0  # ties go to the first class, as argmax
    out = argmax_channels(scores)
    assert out.dtype == np.int64 and np.array_equal(out, scores.argmax(0))
    assert (out[:5] == 3).all()
    assert np.array_equal(argmax_channels(scores[:, 2:20, 5:9]), scores[:, 2:20, 5:9].argmax(0))  # views work


@pytest.mark.parametrize("count", [5, 300])  # uint8 levels, and int16 above 254 masks
def test_paint_instances_top_mask_wins(count):
    gen = torch.Generator().manual_seed(count)
    masks = torch.rand(count, 12, 17, generator=gen) > 0.8
    rank = torch.randperm(count, generator=gen)
    out = paint_instances(masks, rank)
    level = torch.where(masks, rank[:, None, None] + 1, torch.zeros((), dtype=torch.long))
    top, index = level.max(0)
    assert torch.equal(out, torch.where(top > 0, index + 1, torch.zeros_like(index)))


def test_shared_flat_masks_change_nothing():
    gen = torch.Generator().manual_seed(1)
    masks = torch.rand(9, 20, 30, generator=gen) > 0.6
    masks[4] = False  # an empty mask gets no track either way
    class_map = torch.randint(0, 6, (20, 30), generator=gen)
    flat = as_int8(masks)
    a, b = vote(masks, class_map, 6), vote(masks, class_map, 6, flat)
    assert torch.equal(a.counts, b.counts) and torch.equal(a.labels, b.labels) and torch.equal(a.shares, b.shares)
    assert torch.equal(a.counts.sum(1), masks.sum((1, 2)).float())
    plain, shared = Tracker(), Tracker()
    for step in range(3):
        moved = masks.roll(step, dims=2)
        assert plain.update(moved).track_ids.tolist() == shared.update(moved, flat=as_int8(moved)).track_ids.tolist()


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["segformer", "mask2former"])
def test_closed_set_numpy_preprocessing_equals_the_torch_formula(random_models, tmp_path, rgb_640x480, builder):
    """The planar numpy normalisation is the same float32 arithmetic as ``(x - mean) / std`` in
    torch, letterbox padding (query-based models) included; the class map is ``argmax(0)``."""
    model = random_models / "segformer-b0-ade20k" if builder == "segformer" else build_mask2former(tmp_path / "m2f")
    seg = ClosedSetSegmenter(ClosedSetConfig(name="x", model=str(model), backend="torch"))
    image = rgb_640x480[:471, :633]  # odd size: padding for the query-based model
    x, (new_h, new_w) = seg.preprocess(image)
    resized = torch.from_numpy(cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)[None].float()
    ref = F.pad((resized - seg.mean) / seg.std, (0, x.shape[3] - new_w, 0, x.shape[2] - new_h))
    assert x.dtype == torch.float32 and torch.equal(x, ref)
    if builder == "mask2former":
        assert x.shape[2:] != (new_h, new_w)  # the padding was exercised


@pytest.mark.parametrize("int8", [True, False])
def test_overlap_counts_are_exact(monkeypatch, int8):
    import sfs_core.overlap as overlap

    monkeypatch.setattr(overlap, "_INT8_OK", None if int8 else False)  # False: the float32 fallback
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(37, 50, 70, generator=gen) > 0.3
    b = torch.rand(11, 50, 70, generator=gen) > 0.5
    out = overlap_counts(as_int8(a), as_int8(b))
    ref = torch.einsum("np,mp->nm", a.flatten(1).double(), b.flatten(1).double())
    assert out.dtype == torch.float32 and torch.equal(out.double(), ref)
    assert overlap._INT8_OK is int8
    assert torch.equal(pixel_counts(as_int8(a)), a.sum((1, 2)).float())
    assert overlap_counts(as_int8(a[:0]), as_int8(b)).shape == (0, 11)
    strided = a[:, ::2]  # non-contiguous masks are copied, not misread
    assert torch.equal(as_int8(strided), strided.reshape(37, -1).to(torch.int8))


def test_masks_are_cut_to_their_boxes():
    from sfs_core.masks import _crop_to_boxes

    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 20, 30, generator=gen)
    boxes = torch.tensor([[0, 0, 30, 20], [2.4, 3.6, 10.5, 9.5], [29.6, 0, 30, 20], [5, 5, 5, 5], [-3, -3, 4, 50], [10, 2, 12.49, 3.51]])
    out = _crop_to_boxes(logits, boxes)
    ref = torch.zeros_like(out)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):  # a pixel is kept when its centre is in the box
        for y in range(20):
            for x in range(30):
                ref[i, y, x] = bool(logits[i, y, x] > 0) and x1 <= x + 0.5 <= x2 and y1 <= y + 0.5 <= y2
    assert out.dtype == torch.bool and torch.equal(out, ref)


def test_bf16_logits_are_cut_like_their_float_values():
    """The bf16 mask product is thresholded through its int16 bits (numpy has no bf16): the same
    masks as ``> 0`` on the float values, signed zeros and tiny values included."""
    from sfs_core.masks import _crop_to_boxes

    values = torch.randn(4, 20, 30, generator=torch.Generator().manual_seed(5))
    values[0, 0, :4] = torch.tensor([0.0, -0.0, 1e-30, -1e-30])
    logits = values.bfloat16()
    boxes = torch.tensor([[0, 0, 30, 20], [2.4, 3.6, 10.5, 9.5], [5, 5, 5, 5], [-3, -3, 4, 50]])
    out = _crop_to_boxes(logits, boxes)
    assert torch.equal(out, _crop_to_boxes(logits.float(), boxes))
    assert out[0, 0, :4].tolist() == [False, False, True, False]


@pytest.mark.slow
@pytest.mark.parametrize("size", [(480, 640), (471, 633)])
def test_fastsam_numpy_preprocessing_equals_the_torch_formula(random_models, size):
    """FastSAM's planar numpy input is ultralytics' ``letterbox / 255`` exactly, padding (114)
    included; the uint8 pixels an exported backend takes are the same letterbox."""
    from sfs_core.config import MaskGeneratorConfig
    from sfs_core.masks import MaskGenerator, letterbox_size

    gen = MaskGenerator(MaskGeneratorConfig(model=str(random_models / "FastSAM-s.pt"), backend="torch"))
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    x, resized = gen.preprocess(image)
    new_h, new_w, pad_h, pad_w = letterbox_size(*size, gen.config.imgsz, gen.stride)
    canvas = np.full((pad_h, pad_w, 3), 114, np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_h, new_w) != size else image
    ref = torch.from_numpy(canvas).permute(2, 0, 1)[None].float() / 255.0
    assert resized == (new_h, new_w) and x.is_contiguous() and torch.equal(x, ref)
    assert np.array_equal(gen.letterbox(image)[0], canvas)
    assert ((pad_h, pad_w) != (new_h, new_w)) == (size != (480, 640))  # padding exercised once
