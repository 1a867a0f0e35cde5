"""Shared fixtures for the evaluation, bag and replay tests (imported by those test modules).

Everything is generated at test time from the two photos that ship with ultralytics
(``bus.jpg``, ``zidane.jpg``); nothing large is committed. Images are small so the tests stay
fast on two CPU cores.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from sfs_core.image_codec import encode_compressed, encode_image
from sfs_core.labels import LabelSource, LabelTable
from sfs_core.result import MaskRecord, SemanticResult

CAMERA_TOPIC = "/camera/image_raw"
GT_TOPIC = "/camera/labels"
FRAME_ID = "camera_optical"
START_NS = 1_700_000_000_123_456_789
RECEIVE_DELAY_NS = 7_000_000  # log time = header stamp + 7 ms, so the two stay distinguishable


def photo_path(name: str) -> Path:
    """A photo from ultralytics' assets, found without importing ultralytics (slow, networked)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ultralytics (and its sample photos) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "assets" / name
    if not path.exists():
        pytest.skip(f"sample photo {path} is missing")
    return path


@functools.lru_cache(maxsize=8)
def _photo(name: str, width: int, height: int) -> np.ndarray:
    bgr = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
    bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of ``bus.jpg`` or ``zidane.jpg`` resized to ``size = (W, H)``."""
    return _photo(name, *size).copy()


def camera_frames(count: int, size: tuple[int, int] = (160, 120)) -> list[np.ndarray]:
    """``count`` distinct RGB frames: the two photos alternately, panned a little each frame."""
    return [np.roll(photo(("bus.jpg", "zidane.jpg")[i % 2], size), 4 * i, axis=1) for i in range(count)]


def synthetic_labels(rgb: np.ndarray, num_classes: int, ignore_index: int = 255, dtype=np.uint8) -> np.ndarray:
    """A deterministic label map from image content: quantised brightness, with an ignore border."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.int64)
    labels = (gray * num_classes // 256).astype(dtype)
    labels[:3, :] = ignore_index
    labels[:, :3] = ignore_index
    return labels


# ---- bags -----------------------------------------------------------------------------------
def write_camera_bag(path: Path, frames: list[np.ndarray], storage: str = "mcap", compressed: bool = False,
                     rate_hz: float = 10.0, topic: str = CAMERA_TOPIC, gt: list[np.ndarray] | None = None,
                     gt_topic: str = GT_TOPIC, extra_image_topic: str | None = None) -> Path:
    """A rosbag2 with a camera topic (raw rgb8 or JPEG CompressedImage) at ``rate_hz``.

    Header stamps are ``START_NS + i / rate``; receive (log) times are 7 ms later. ``gt`` adds
    mono8 label images with the same stamps (mono16 when a map holds values above 255).
    ``extra_image_topic`` adds a second camera so auto-detection must refuse.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = store.types
    Time, Header = types["builtin_interfaces/msg/Time"], types["std_msgs/msg/Header"]
    Image, CompressedImage = types["sensor_msgs/msg/Image"], types["sensor_msgs/msg/CompressedImage"]

    def header(stamp_ns: int):
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=FRAME_ID)

    def raw(head, array: np.ndarray, encoding: str):
        e = encode_image(array, encoding)
        return Image(header=head, height=e.height, width=e.width, encoding=e.encoding, is_bigendian=e.is_bigendian, step=e.step, data=e.data)

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        camera = writer.add_connection(topic, msgtype, typestore=store)
        labels = writer.add_connection(gt_topic, "sensor_msgs/msg/Image", typestore=store) if gt is not None else None
        extra = writer.add_connection(extra_image_topic, "sensor_msgs/msg/Image", typestore=store) if extra_image_topic else None
        for i, rgb in enumerate(frames):
            stamp = START_NS + round(i * 1e9 / rate_hz)
            head = header(stamp)
            if compressed:
                fmt, data = encode_compressed(rgb, "jpeg", quality=95)
                msg = CompressedImage(header=head, format=fmt, data=np.frombuffer(data, np.uint8))
            else:
                msg = raw(head, rgb, "rgb8")
            writer.write(camera, stamp + RECEIVE_DELAY_NS, store.serialize_cdr(msg, msgtype))
            if labels is not None:
                encoding = "mono16" if gt[i].dtype == np.uint16 else "mono8"
                writer.write(labels, stamp + 2 * RECEIVE_DELAY_NS, store.serialize_cdr(raw(head, gt[i], encoding), "sensor_msgs/msg/Image"))
            if extra is not None:
                writer.write(extra, stamp + RECEIVE_DELAY_NS, store.serialize_cdr(raw(head, rgb, "rgb8"), "sensor_msgs/msg/Image"))
    return path


def read_output(path: Path) -> dict[str, list]:
    """``{topic: [(log_time_ns, msg)]}`` of a bag, deserialised with rosbags and our typestore."""
    from rosbags.rosbag2 import Reader

    from sfs_core.bags import sfs_typestore

    store = sfs_typestore()
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, log_time, raw in reader.messages():
            out.setdefault(connection.topic, []).append((log_time, store.deserialize_cdr(raw, connection.msgtype)))
    return out


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def assert_masks_agree_with_semantic(output: dict[str, list], masks_topic: str = "/sfs/masks",
                                     semantic_topic: str = "/sfs/semantic", labels_topic: str = "/sfs/labels") -> None:
    """Each LabeledMaskArray agrees with the /sfs/semantic frame of the same stamp: where a mask
    won a pixel (instance_ids = index + 1) the label map holds that mask's class_id; areas,
    bboxes and crops match instance_ids; labels match the latest label table's names."""
    from sfs_core.image_codec import image_msg_to_labels

    names = list(output[labels_topic][-1][1].names)
    semantic_by_stamp = {stamp_ns(m): m for _, m in output[semantic_topic]}
    assert len(output[masks_topic]) == len(semantic_by_stamp)
    for _, masks in output[masks_topic]:
        instance_ids = image_msg_to_labels(masks.instance_ids)
        label_map = image_msg_to_labels(semantic_by_stamp[stamp_ns(masks)])
        lut = np.array([0] + [m.class_id for m in masks.masks], dtype=np.uint16)
        covered = instance_ids > 0
        assert np.array_equal(lut[instance_ids][covered], label_map[covered])
        for index, mask in enumerate(masks.masks):
            assert names[mask.class_id] == mask.label
            assert mask.area == int((instance_ids == index + 1).sum())
            x, y, w, h = mask.bbox.x_offset, mask.bbox.y_offset, mask.bbox.width, mask.bbox.height
            crop = image_msg_to_labels(mask.mask)
            assert crop.shape == (h, w) and np.array_equal(crop > 0, instance_ids[y:y + h, x:x + w] == index + 1)


# ---- datasets in their official layouts -----------------------------------------------------
def make_cityscapes(root: Path, count: int = 3, size: tuple[int, int] = (128, 64), label_ids: bool = False) -> Path:
    """``leftImg8bit/val/<city>/*_leftImg8bit.png`` + ``gtFine/val/<city>/*_gtFine_labelTrainIds.png``
    (``*_gtFine_labelIds.png`` instead when ``label_ids``), over two cities."""
    for i, rgb in enumerate(camera_frames(count, size)):
        city = ("aachen", "zurich")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        image_dir, gt_dir = root / "leftImg8bit" / "val" / city, root / "gtFine" / "val" / city
        image_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_dir / f"{stem}_leftImg8bit.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        train_ids = synthetic_labels(rgb, 19)
        if label_ids:
            from sfs_core.evaluation.datasets import _CITYSCAPES_LABEL_TO_TRAIN

            to_label = {train: label for label, train in _CITYSCAPES_LABEL_TO_TRAIN.items()}
            ids = np.zeros_like(train_ids)  # 0 = "unlabeled", which maps to ignore
            for train_id, label_id in to_label.items():
                ids[train_ids == train_id] = label_id
            cv2.imwrite(str(gt_dir / f"{stem}_gtFine_labelIds.png"), ids)
        else:
            cv2.imwrite(str(gt_dir / f"{stem}_gtFine_labelTrainIds.png"), train_ids)
    return root


def make_ade20k(root: Path, count: int = 3, size: tuple[int, int] = (96, 72)) -> Path:
    """``ADEChallengeData2016/images/validation/*.jpg`` + ``annotations/validation/*.png`` (0..150)."""
    base = root / "ADEChallengeData2016"
    (base / "images" / "validation").mkdir(parents=True, exist_ok=True)
    (base / "annotations" / "validation").mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(camera_frames(count, size)):
        stem = f"ADE_val_{i + 1:08d}"
        cv2.imwrite(str(base / "images" / "validation" / f"{stem}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        labels = synthetic_labels(rgb, 151, ignore_index=0)  # ADE: 0 = "other", 1..150 classes
        cv2.imwrite(str(base / "annotations" / "validation" / f"{stem}.png"), labels)
    return root


# ---- a fast, deterministic stand-in for Pipeline ---------------------------------------------
@dataclass
class FakeClock:
    """A clock that only moves when told to (seconds)."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


class FakePipeline:
    """Deterministic :class:`SemanticResult` s without models (Pipeline's contract, not its maths).

    The frame is cut into a 2 x 3 grid of masks (a 2-pixel uncovered border keeps some pixels
    ``unlabeled``); cell ``k`` is labelled ``labels[k]``. From frame ``grow_at`` on, the last
    cell is labelled ``"kite"``, which grows the label table like the open-vocabulary branch.
    ``seconds`` per frame advance ``clock`` (a :class:`FakeClock`), for exact realtime tests.
    """

    labels = ("road", "car", "person", "tree", "unidentified", "sky")

    def __init__(self, clock: FakeClock | None = None, seconds: float = 0.0, grow_at: int = 2) -> None:
        self.label_table = LabelTable(["road", "car", "person", "tree", "sky"])
        self.clock, self.seconds, self.grow_at = clock, seconds, grow_at
        self.frames = 0

    def process(self, image: np.ndarray) -> SemanticResult:
        height, width = image.shape[:2]
        labels = list(self.labels)
        if self.frames >= self.grow_at:
            labels[-1] = "kite"
        self.frames += 1
        instance_map = np.zeros((height, width), np.uint16)
        ys, xs = np.linspace(2, height - 2, 3).astype(int), np.linspace(2, width - 2, 4).astype(int)
        records, class_ids = [], []
        for k in range(6):
            r, c = divmod(k, 3)
            instance_map[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = k + 1
            class_id = self.label_table.add(labels[k])
            class_ids.append(class_id)
            area = int((instance_map == k + 1).sum())
            bbox = (int(xs[c]), int(ys[r]), int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r]))
            source = LabelSource.UNIDENTIFIED if labels[k] == "unidentified" else LabelSource.CLOSED_SET
            records.append(MaskRecord(id=k + 1, label=labels[k], class_id=class_id, score=0.5 + 0.05 * k, source=source,
                                      bbox=bbox, area=area, centroid=(bbox[0] + bbox[2] / 2, bbox[1] + bbox[3] / 2),
                                      candidates=["a", "b"] if k == 0 else [], candidate_scores=[0.6, 0.3] if k == 0 else []))
        lut = np.array([0] + class_ids, dtype=np.uint16)
        if self.clock is not None:
            self.clock.now += self.seconds
        return SemanticResult(label_map=lut[instance_map], instance_map=instance_map, masks=records,
                              label_table=self.label_table, timings={"masks": 1.0, "total": 2.0})


# ---- random-weight models (slow tests; the models come from test/conftest.py's random_models) ----
#: Small network inputs keep the real models at a few hundred ms per frame on two cores.
FAST_OVERRIDES = {"masks.imgsz": 320, "closed_set.ade20k.input_size": 256, "masks.max_masks": 30}


def fast_cli_args(models: Path) -> list[str]:
    """``--config/--set`` arguments for the CLI with the random models and small inputs."""
    args = ["--config", str(models / "sfs.yaml")]
    for key, value in FAST_OVERRIDES.items():
        args += ["--set", f"{key}={value}"]
    return args
