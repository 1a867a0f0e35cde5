"""The open-vocabulary labeler and worker with the real architectures (random weights): CLIP
ViT-B-32 and BLIP-base from ``sfs models init-random``. Outputs are meaningless; contracts are not."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from sfs_core.config import load_config
from sfs_core.labels import LabelSource, LabelTable
from sfs_core.open_vocab import OpenVocabBranch, OpenVocabLabeler, OpenVocabWorker, Snapshot
from sfs_core.open_vocab.clip_ranker import encode_text_trimmed
from sfs_core.open_vocab.text_cache import TextEmbeddingCache
from sfs_core.open_vocab_fusion import FusionThresholds
from sfs_core.tracking import Tracker

pytestmark = pytest.mark.slow


def blocks(shift=0):
    """Six hand-made masks at prototype resolution (120 x 160) of a 480 x 640 frame."""
    masks = torch.zeros(6, 120, 160, dtype=torch.bool)
    for i in range(6):
        masks[i, 10 + 15 * i : 45 + 15 * i, 5 + 22 * i + shift : 40 + 22 * i + shift] = True
    return masks


@pytest.fixture(scope="module")
def open_vocab_config(random_config):
    """The ``open_vocab`` section init-random wrote, switched on."""
    return dataclasses.replace(load_config(random_config).open_vocab, enabled=True)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("open-vocab-cache")


@pytest.fixture(scope="module")
def clip_labeler(open_vocab_config, cache_dir):
    return OpenVocabLabeler(dataclasses.replace(open_vocab_config, mode="clip"), cache_dir=cache_dir)


@pytest.fixture(scope="module")
def caption_labeler(open_vocab_config, cache_dir):
    config = dataclasses.replace(open_vocab_config, mode="caption", vocabulary=["cityscapes"], caption_batch_size=2,
                                 caption_max_tokens=4, mask_background=True)
    return OpenVocabLabeler(config, cache_dir=cache_dir)


def count_calls(obj, name):
    calls = []
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append(args[0].shape[0] if args else kwargs["pixel_values"].shape[0])
        return original(*args, **kwargs)

    setattr(obj, name, wrapper)
    return calls


def test_clip_mode_gives_top_k_vocabulary_names_from_one_image_forward(clip_labeler, rgb_640x480):
    assert not clip_labeler.vocabulary_from_disk  # a fresh cache: computed once here
    assert len(clip_labeler.vocabulary) == 230 and clip_labeler.vocabulary_features.shape == (230, 512)
    calls = count_calls(clip_labeler.ranker.model, "encode_image")
    try:
        results = clip_labeler.label(rgb_640x480, blocks())
    finally:
        del clip_labeler.ranker.model.encode_image
    assert calls == [6]  # all crops in one forward
    assert len(results) == 6
    vocabulary = set(clip_labeler.vocabulary)
    for labels in results:
        assert len(labels.candidates) == 3 and set(labels.candidates) <= vocabulary
        assert list(labels.scores) == sorted(labels.scores, reverse=True)
        assert 0 < labels.scores[-1] and sum(labels.scores) <= 1.0 + 1e-6
    assert set(clip_labeler.timings) == {"crop", "clip_image", "rank"}


def test_vocabulary_embeddings_are_cached_on_disk_keyed_by_model_vocabulary_and_prompt(clip_labeler, cache_dir):
    ranker = clip_labeler.ranker
    cache = TextEmbeddingCache(cache_dir / "text_embeddings")
    stored, hit = cache.get_or_compute(ranker.model_id, clip_labeler.vocabulary, ranker.prompt, None)
    assert hit
    torch.testing.assert_close(stored, clip_labeler.vocabulary_features.cpu())
    with pytest.raises(KeyError):  # another prompt is another entry
        cache.get_or_compute(ranker.model_id, clip_labeler.vocabulary, "a drawing of a {}.", None)


def test_a_new_process_loads_text_embeddings_from_disk_instead_of_recomputing(clip_labeler, open_vocab_config, cache_dir):
    script = textwrap.dedent(
        f"""
        import json, os
        os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        from sfs_core.config import OpenVocabConfig
        from sfs_core.open_vocab.clip_ranker import ClipRanker
        from sfs_core.open_vocab.labeler import OpenVocabLabeler

        def refuse(self, prompts, batch_size=256):
            raise AssertionError(f"recomputed {{len(prompts)}} text embeddings")

        ClipRanker._encode_prompts = refuse
        config = OpenVocabConfig(**json.loads({json.dumps(json.dumps(dataclasses.asdict(open_vocab_config)))}))
        labeler = OpenVocabLabeler(config, cache_dir={str(cache_dir)!r})
        print(json.dumps({{"from_disk": labeler.vocabulary_from_disk, "encoded": labeler.ranker.texts_encoded,
                          "checksum": float(labeler.vocabulary_features.double().sum())}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["from_disk"] and report["encoded"] == 0
    assert report["checksum"] == pytest.approx(float(clip_labeler.vocabulary_features.double().sum()), rel=1e-6)


def test_trimmed_text_context_gives_the_full_context_embedding(clip_labeler):
    model, tokenizer = clip_labeler.ranker.model, clip_labeler.ranker.tokenizer
    tokens = tokenizer(["a photo of a dog.", "a photo of a chest of drawers.", "a photo of a very small red traffic cone."])
    with torch.inference_mode():
        torch.testing.assert_close(encode_text_trimmed(model, tokens), model.encode_text(tokens), atol=1e-4, rtol=1e-4)


def test_rank_candidates_restricts_each_crop_to_its_own_names(clip_labeler, rgb_640x480):
    crops_features = clip_labeler.ranker.encode_images(torch.rand(2, 3, 224, 224) * 255)
    first, second = clip_labeler.rank_candidates(crops_features, [["dog", "kite"], []])
    assert set(first.candidates) == {"dog", "kite"} and sum(first.scores) == pytest.approx(1.0, abs=1e-5)
    assert len(second.candidates) == 3 and set(second.candidates) <= set(clip_labeler.vocabulary)  # fallback


def test_caption_mode_captions_in_batches_and_ranks_phrases_with_closed_set_candidates(caption_labeler, rgb_640x480):
    generate = count_calls(caption_labeler.captioner.model, "generate")
    try:
        results = caption_labeler.label(rgb_640x480, blocks()[:3], [["bus"], ["person", "car"], []])
    finally:
        del caption_labeler.captioner.model.generate
    assert generate == [2, 1]  # caption_batch_size = 2
    assert set(caption_labeler.timings) == {"crop", "clip_image", "caption", "rank"}
    for labels, closed in zip(results, [["bus"], ["person", "car"], []]):
        assert labels.caption  # random weights: random word pieces, but a caption
        phrases = caption_labeler.noun_phrases(labels.caption)
        allowed = set(phrases) | set(closed) or set(caption_labeler.vocabulary)
        assert 1 <= len(labels.candidates) <= 3 and set(labels.candidates) <= allowed
        if len(allowed) <= 3:  # then every candidate makes the top-3
            assert set(labels.candidates) == allowed
        assert list(labels.scores) == sorted(labels.scores, reverse=True) and sum(labels.scores) <= 1 + 1e-5


def test_worker_with_real_clip_puts_open_vocab_labels_on_the_same_tracks(clip_labeler, rgb_640x480):
    table = LabelTable(["person", "car"])
    tracker = Tracker(label_table=table, thresholds=FusionThresholds(0.4, 0.0, 0.0))
    closed = dict(class_ids=[table.id_of("car")] * 6, confidences=[0.2] * 6)
    first = tracker.update(blocks(0), **closed)
    assert all(label.source == LabelSource.UNIDENTIFIED for label in first.labels)
    config = dataclasses.replace(clip_labeler.config, max_rate=100.0, min_area=0.0)
    with OpenVocabWorker(clip_labeler, tracker, config) as worker:
        assert worker.submit(Snapshot.from_frame(rgb_640x480, blocks(0), first))
        for shift in range(1, 200):  # the per-frame path keeps going while the worker labels
            frame = tracker.update(blocks(shift % 3), **closed)
            if worker.stats().results_applied == 6:
                break
            time.sleep(0.05)
        stats = worker.stats()
    assert not worker.running
    assert stats.results_applied == 6 and stats.masks_per_second > 0 and stats.result_age_last > 0
    later = tracker.update(blocks(1), **closed)
    assert later.track_ids.tolist() == first.track_ids.tolist() == frame.track_ids.tolist()
    assert all(label.source == LabelSource.OPEN_VOCAB for label in later.labels)
    assert all(label.name in clip_labeler.vocabulary and len(label.candidates) == 3 for label in later.labels)
    assert not np.isnan(later.open_vocab_stamps).any()


def test_synchronous_branch_labels_a_single_image(clip_labeler, rgb_640x480):
    """What ``sfs segment`` needs: labels on the tracks of the very frame."""
    table = LabelTable()
    tracker = Tracker(label_table=table, thresholds=FusionThresholds(0.4, 0.0, 0.0))
    branch = OpenVocabBranch(clip_labeler.config, tracker, labeler=clip_labeler, synchronous=True)
    before = len(table)
    tracks = branch.observe(rgb_640x480, blocks(), tracker.update(blocks()))
    assert all(label.source == LabelSource.OPEN_VOCAB for label in tracks.labels)
    assert len(table) > before and all(table.name_of(label.class_id) == label.name for label in tracks.labels)


def test_no_masks_and_read_only_frames(clip_labeler, rgb_640x480):
    assert clip_labeler.label(rgb_640x480, torch.zeros(0, 120, 160, dtype=torch.bool)) == []
    frozen = rgb_640x480.copy()
    frozen.flags.writeable = False  # as np.frombuffer over a ROS message
    assert len(clip_labeler.label(frozen, blocks()[:1])) == 1
