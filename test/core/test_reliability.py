"""Reliability of the ROS-free core (issue 7): bad input, model faults, caches, checkpoints, CLI.

The node-level counterparts (the same bad frames over real topics, signals, soak) are in
test/ros/test_reliability*.py. Faults are injected in-process by monkeypatching a real
:class:`~sfs_core.pipeline.Pipeline` (random-weight models) or the open-vocabulary worker.
"""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
import torch
from fixtures_eval import camera_frames, fast_cli_args, make_cityscapes, write_camera_bag

from sfs_core.backends import cached_export
from sfs_core.cli import main
from sfs_core.config import ConfigError, PipelineConfig, load_config
from sfs_core.image_codec import decode_rgb
from sfs_core.pipeline import MIN_BACKOFF_IMGSZ, Pipeline, fit_to_pixels


# ---- bad-input matrix: the codec's documented behaviour ----------------------------------------
def _raw(encoding: str, height: int, width: int, channels: int, itemsize: int = 1, fill: int = 7):
    step = width * channels * itemsize
    return dict(encoding=encoding, height=height, width=width, step=step, data=bytes([fill]) * (step * height))


ACCEPTED = {  # documented in sfs_core/image_codec.py: decoded to RGB, never rejected
    "16UC1": _raw("16UC1", 4, 6, 1, 2),
    "bayer_rggb8": _raw("bayer_rggb8", 4, 6, 1),
    "bayer_grbg8": _raw("bayer_grbg8", 4, 6, 1),
    "yuv422": _raw("yuv422", 4, 6, 2),
    "yuv422_yuy2": _raw("yuv422_yuy2", 4, 6, 2),
    "tiny-1x1": _raw("rgb8", 1, 1, 3),
    "tiny-2x7": _raw("rgb8", 7, 2, 3),
}
REJECTED = {  # each: fields, the words of the ValueError
    "empty-0x0": (dict(encoding="rgb8", height=0, width=0, step=0, data=b""), "empty image"),
    "step-below-row": ({**_raw("rgb8", 4, 6, 3), "step": 10}, "step 10 is smaller"),
    "step-not-matching-data": ({**_raw("rgb8", 4, 6, 3), "step": 20}, "expected step \\* height"),
    "step-odd-for-16-bit": ({**_raw("16UC1", 4, 6, 1, 2), "step": 13}, "not a multiple"),
    "data-shorter-than-step-x-height": ({**_raw("rgb8", 4, 6, 3), "data": bytes(50)}, "expected step \\* height"),
    "32FC1": (_raw("32FC1", 4, 6, 1, 4), "unsupported image encoding '32FC1'"),
    "32FC1-nan-inf": (dict(encoding="32FC1", height=1, width=3, step=12,
                           data=np.array([np.nan, np.inf, -np.inf], np.float32).tobytes()), "unsupported image encoding"),
    "64FC1": (_raw("64FC1", 2, 2, 1, 8), "unsupported image encoding"),
    "yuv422-odd-width": (_raw("yuv422", 2, 3, 2), "even width"),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_documented_encodings_and_tiny_images_decode(case):
    rgb = decode_rgb(**ACCEPTED[case])
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[:2] == (ACCEPTED[case]["height"], ACCEPTED[case]["width"])


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_malformed_or_unsupported_frames_raise_one_clear_value_error(case):
    fields, words = REJECTED[case]
    with pytest.raises(ValueError, match=words):
        decode_rgb(**fields)


def test_fit_to_pixels_keeps_aspect_and_the_limit():
    huge = np.zeros((8192, 8192, 3), np.uint8)
    small = fit_to_pixels(huge, 640 * 480)
    assert small.shape[0] * small.shape[1] <= 640 * 480 and small.shape[0] == small.shape[1] == 554
    wide = fit_to_pixels(np.zeros((1000, 3000, 3), np.uint8), 30000)
    assert wide.shape[0] * wide.shape[1] <= 30000 and abs(wide.shape[1] / wide.shape[0] - 3) < 0.05
    same = np.zeros((10, 10, 3), np.uint8)
    assert fit_to_pixels(same, 0) is same and fit_to_pixels(same, 100) is same
    assert fit_to_pixels(np.zeros((1, 5000, 3), np.uint8), 100).shape == (1, 100, 3)


def test_max_input_pixels_is_validated():
    with pytest.raises(ConfigError, match="'max_input_pixels': must be >= 0"):
        PipelineConfig(max_input_pixels=-1).validate(check_files=False)
    assert PipelineConfig.from_params({"max_input_pixels": 100}).max_input_pixels == 100
    assert PipelineConfig().to_params()["max_input_pixels"] == 3840 * 2160


# ---- one real pipeline for the fault tests ------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(make_config):
    pipe = Pipeline(make_config({"max_input_pixels": 320 * 240}))
    yield pipe
    pipe.close()


@pytest.mark.slow
def test_huge_frame_is_downscaled_and_tiny_frames_work(pipeline):
    """An 8k x 8k frame (192 MiB) is processed at <= max_input_pixels; outputs at that size."""
    huge = np.random.default_rng(0).integers(0, 255, (8192, 8192, 3), dtype=np.uint8)
    result = pipeline.process(huge)
    h, w = result.label_map.shape
    assert h * w <= 320 * 240 and h == w
    del huge
    for shape in ((1, 1, 3), (7, 2, 3), (2, 7, 3)):
        result = pipeline.process(np.full(shape, 90, np.uint8))
        assert result.label_map.shape == shape[:2]


@pytest.mark.slow
def test_a_model_that_raises_mid_frame_fails_that_frame_only(pipeline, rgb_640x480, monkeypatch):
    """Monkeypatched in-process: the closed-set segmenter raises once; the next frame works."""
    real = pipeline.segmenters[0]
    calls = {"n": 0}

    def flaky(image, timings):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated model failure")
        return real(image, timings)

    monkeypatch.setattr(pipeline, "segmenters", [_Callable(flaky)])
    with pytest.raises(RuntimeError, match="simulated model failure"):
        pipeline.process(rgb_640x480)
    result = pipeline.process(rgb_640x480)
    assert result.label_map.shape == (240, 320)  # max_input_pixels of this fixture


class _Callable:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, image, timings):
        return self.fn(image, timings)


@pytest.mark.slow
def test_cuda_out_of_memory_halves_imgsz_once_and_recovers(pipeline, rgb_640x480, monkeypatch, caplog):
    """Simulated: the mask generator's forward raises torch.cuda.OutOfMemoryError (works on a CPU build)."""
    generator = pipeline.mask_generator
    failures = {"left": 1}

    class OomOnce:
        def __getattr__(self, name):
            return getattr(generator, name)

        def infer(self, image, timings=None):
            if failures["left"]:
                failures["left"] -= 1
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return generator.infer(image, timings)

    monkeypatch.setattr(pipeline, "mask_generator", OomOnce())
    imgsz = pipeline.config.masks.imgsz
    monkeypatch.setattr(pipeline.config.masks, "imgsz", imgsz)  # restored after the test
    before = pipeline.oom_backoffs
    with caplog.at_level(logging.WARNING, logger="sfs_core.pipeline"):
        result = pipeline.process(rgb_640x480)  # retried at half size within the same call
    assert result.label_map.shape == (240, 320)
    assert pipeline.config.masks.imgsz == imgsz // 2 and pipeline.oom_backoffs == before + 1
    assert f"masks.imgsz {imgsz} -> {imgsz // 2}" in caplog.text
    assert pipeline.process(rgb_640x480).label_map.shape == (240, 320)  # and later frames work
    # At the floor there is nothing left to shrink: the error reaches the caller (frame skipped).
    pipeline.config.masks.imgsz = MIN_BACKOFF_IMGSZ
    failures["left"] = 1
    with pytest.raises(torch.cuda.OutOfMemoryError):
        pipeline.process(rgb_640x480)
    assert pipeline.process(rgb_640x480).label_map.shape == (240, 320)


# ---- open-vocabulary worker crash -----------------------------------------------------------------
def test_a_crashed_open_vocab_worker_thread_is_restarted_and_counted():
    """A bug outside the labeler's try (here: the tracker's apply raises) kills the thread; the
    next submit() from the per-frame path restarts it and counts ``restarts``."""
    from test_open_vocab_worker import FakeLabeler, RecordingSink, config, snapshot, wait_for

    from sfs_core.open_vocab import OpenVocabWorker

    class CrashOnce(RecordingSink):
        crashed = False

        def apply_open_vocab(self, track_id, labels, stamp):
            if not self.crashed:
                CrashOnce.crashed = True
                raise RuntimeError("simulated bug in the tracker")
            return super().apply_open_vocab(track_id, labels, stamp)

    sink = CrashOnce()
    worker = OpenVocabWorker(FakeLabeler(), sink, config()).start()
    try:
        worker.submit(snapshot([1, 2]))
        wait_for(lambda: not worker.running)
        assert worker.stats().errors == 1 and "simulated bug" in worker.stats().last_error
        assert not worker.stats().running  # /diagnostics reports ERROR "worker not running" meanwhile
        worker.submit(snapshot([3, 4]))
        assert worker.running and worker.stats().restarts == 1
        wait_for(lambda: len(sink.applied) == 2)
        assert {t for t, _, _ in sink.applied} == {3, 4}
    finally:
        assert worker.stop(5)
    worker.submit(snapshot([5]))  # a stopped worker is not "crashed": no restart
    assert not worker.running and worker.stats().restarts == 1


# ---- caches and checkpoints -----------------------------------------------------------------------
def test_unwritable_export_cache_degrades_to_a_temporary_folder(tmp_path, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")  # unwritable even for root
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights")
    with caplog.at_level(logging.WARNING, logger="sfs_core.backends"):
        path = cached_export(str(source), blocker / "cache", "t1", lambda p: p.write_bytes(b"onnx"))
    assert path.read_bytes() == b"onnx" and blocker not in path.parents
    assert "cannot write the export cache" in caplog.text


def test_unwritable_text_embedding_cache_warns_and_computes(tmp_path, caplog):
    from sfs_core.open_vocab.text_cache import TextEmbeddingCache

    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = TextEmbeddingCache(blocker / "text_embeddings")
    with caplog.at_level(logging.WARNING):
        embeddings, hit = cache.get_or_compute("m", ["a", "b"], "{}", lambda names: torch.ones(len(names), 4))
    assert not hit and embeddings.shape == (2, 4)
    assert "cannot write text-embedding cache" in caplog.text


@pytest.mark.slow
def test_pipeline_loads_with_an_unwritable_cache_dir(make_config, tmp_path, rgb_640x480):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    pipe = Pipeline(make_config({"cache_dir": str(blocker / "cache")}))
    try:
        assert pipe.process(rgb_640x480).label_map.shape == (480, 640)
    finally:
        pipe.close()


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"not a checkpoint", b""], ids=["garbage", "empty"])
def test_corrupt_checkpoint_is_one_clear_config_error(make_config, tmp_path, content):
    bad = tmp_path / "FastSAM-s.pt"
    bad.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        Pipeline(make_config({"masks.model": str(bad), "masks.backend": "torch"}))
    message = str(info.value)
    assert message.startswith("parameter 'masks.model': cannot load model") and str(bad) in message
    assert "\n" not in message


def test_corrupt_closed_set_folder_is_one_clear_config_error(make_config, tmp_path, random_models):
    broken = tmp_path / "segformer"
    shutil.copytree(random_models / "segformer-b0-ade20k", broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"\x00" * 16)
    with pytest.raises(ConfigError, match="parameter 'closed_set.ade20k.model': cannot load model"):
        Pipeline(make_config({"closed_set.ade20k.model": str(broken), "closed_set.ade20k.backend": "torch"}))


# ---- untrusted checkpoints: model_roots -------------------------------------------------------------
def test_model_roots_refuse_models_outside_them(random_config, random_models, tmp_path):
    inside = load_config(random_config, {"model_roots": [str(random_models)]})
    inside.validate()  # every random model lies in that folder

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ConfigError, match="parameter 'masks.model': .* outside the folders of parameter 'model_roots'"):
        load_config(random_config, {"model_roots": [str(elsewhere)]}).validate()

    escape = elsewhere / "FastSAM-s.pt"  # a symlink inside a root that points outside is refused
    escape.symlink_to(random_models / "FastSAM-s.pt")
    cfg = load_config(random_config, {"model_roots": [str(elsewhere), str(random_models / "segformer-b0-ade20k")],
                                      "masks.model": str(escape)})
    with pytest.raises(ConfigError, match="'masks.model'.*outside"):
        cfg.validate()

    hub = load_config(random_config, {"model_roots": [str(random_models)], "offline": False,
                                      "closed_set.ade20k.model": "nvidia/segformer-b0-finetuned-ade-512-512"})
    with pytest.raises(ConfigError, match="'closed_set.ade20k.model': 'nvidia/.*' is a download"):
        hub.validate()
    tag = load_config(random_config, {"model_roots": [str(random_models)], "open_vocab.enabled": True,
                                      "open_vocab.clip_pretrained": "openai", "offline": False})
    with pytest.raises(ConfigError, match="'open_vocab.clip_pretrained'.*is a download"):
        tag.validate()
    with pytest.raises(ConfigError, match="'model_roots': expected a list of folders"):
        PipelineConfig.from_params({"model_roots": [3]})
    assert PipelineConfig().model_roots == [] and PipelineConfig().to_params()["model_roots"] == []


# ---- CLI: corrupt bags, wrong topics, broken datasets ------------------------------------------------
@pytest.fixture(scope="module")
def camera_bag(tmp_path_factory):
    return write_camera_bag(tmp_path_factory.mktemp("bag") / "in", camera_frames(4, (160, 120)), "mcap")


def _mcap(bag):
    return next(bag.rglob("*.mcap")) if bag.is_dir() else bag


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_sfs_replay_of_a_corrupt_bag_is_one_error_line(camera_bag, damage, random_models, tmp_path, capsys):
    bag = tmp_path / "bag"
    shutil.copytree(camera_bag, bag) if camera_bag.is_dir() else shutil.copy(camera_bag, bag)
    data = _mcap(bag).read_bytes()
    _mcap(bag).write_bytes({"truncated": data[: len(data) * 2 // 3], "garbage": bytes(len(data)), "empty": b""}[damage])
    code = main(["replay", str(bag), "--out", str(tmp_path / "out"), "--quiet", *fast_cli_args(random_models)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"cannot read bag '{bag}'" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("topic, words", [("/nope", "is not in bag"), ("/sfs_test/no_such", "is not in bag")])
def test_sfs_replay_of_a_missing_topic_is_one_error_line(camera_bag, topic, words, random_models, tmp_path, capsys):
    code = main(["replay", str(camera_bag), "--out", str(tmp_path / "out"), "--image-topic", topic, "--quiet",
                 *fast_cli_args(random_models)])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err


def test_bag_reader_refuses_a_non_image_topic(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from sfs_core.bags import BagError, BagReader

    store = get_typestore(Stores.ROS2_JAZZY)
    String = store.types["std_msgs/msg/String"]
    with Writer(tmp_path / "strings", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/chatter", String.__msgtype__, typestore=store)
        writer.write(conn, 1, store.serialize_cdr(String(data="hi"), String.__msgtype__))
    with BagReader(tmp_path / "strings") as reader:
        with pytest.raises(BagError, match="'/chatter' has type std_msgs/msg/String"):
            reader.select_image_topic("/chatter")
        with pytest.raises(BagError, match="no sensor_msgs/Image"):
            reader.select_image_topic()


@pytest.mark.slow
def test_sfs_evaluate_missing_or_mismatched_ground_truth(random_models, tmp_path, capsys):
    root = make_cityscapes(tmp_path / "cs", count=2)
    labels = sorted(root.rglob("*_gtFine_labelTrainIds.png"))
    labels[0].unlink()
    def args(root, out):
        return ["evaluate", "--dataset", "cityscapes", "--root", str(root), "--out", str(out), *fast_cli_args(random_models)]

    assert main(args(root, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "no ground truth for" in err and "Traceback" not in err

    root = make_cityscapes(tmp_path / "cs2", count=2)
    label = sorted(root.rglob("*_gtFine_labelTrainIds.png"))[0]
    cv2.imwrite(str(label), np.zeros((10, 10), np.uint8))  # wrong size for its image
    code = main(args(root, tmp_path / "o2"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "size" in err or "shape" in err
    assert "Traceback" not in err

