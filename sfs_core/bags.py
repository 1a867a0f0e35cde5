"""rosbag2 input and output without ROS, with ``rosbags`` (MCAP and sqlite3 storage).

Reading: :class:`BagReader` lists the image topics (``sensor_msgs/msg/Image`` and
``sensor_msgs/msg/CompressedImage``), picks the only one or the one asked for, and yields
:class:`BagMessage` s whose pixels are decoded on demand (:mod:`sfs_core.image_codec`), so
skipped frames cost no decoding.

Writing: :class:`ResultBagWriter` writes one :class:`~sfs_core.result.SemanticResult` per input
frame to the node's topics (:class:`OutputTopics`), with our message definitions from
``msg/*.msg`` registered in the typestore (:func:`sfs_typestore`) and stored in the bag, so
``ros2 bag``, Foxglove and ``rosbags`` can all read it. Each output message carries the input's
header (stamp and frame_id) and is logged at the input's receive time.

``/sfs/labels`` mirrors the node's transient-local topic: it is written with the first frame and
again whenever the label table grows (so its count is the number of table versions, not the
number of frames); it is offered as reliable + transient local.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sfs_core.image_codec import (
    EncodedImage,
    compressed_msg_to_labels,
    compressed_msg_to_rgb,
    encode_image,
    image_msg_to_labels,
    image_msg_to_rgb,
)
from sfs_core.labels import LabelTable
from sfs_core.result import SemanticResult

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
LABELED_MASK = "sfs_ros/msg/LabeledMask"
LABELED_MASK_ARRAY = "sfs_ros/msg/LabeledMaskArray"
LABEL_TABLE = "sfs_ros/msg/LabelTable"
SFS_MESSAGES = ("LabeledMask", "LabeledMaskArray", "LabelTable")
STORAGES = ("mcap", "sqlite3")
MSG_DIR_ENV = "SFS_MSG_DIR"


class BagError(ValueError):
    """A bag that cannot be used as asked (no image topic, ambiguous topic, unknown storage)."""


# ---- our message types ---------------------------------------------------------------------
def find_msg_dir(msg_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``LabeledMask.msg`` & co.

    Search order: ``msg_dir``; ``$SFS_MSG_DIR``; the source tree (``<repo>/msg``); package data
    (``sfs_core/msg``); an installed ROS package (``<prefix>/share/sfs_ros/msg`` for each prefix
    in ``$AMENT_PREFIX_PATH``); a pip install (``sys.prefix/share/sfs_ros/msg``, from setup.py).
    """
    here = Path(__file__).resolve().parent
    candidates = [Path(msg_dir)] if msg_dir else []
    if os.environ.get(MSG_DIR_ENV):
        candidates.append(Path(os.environ[MSG_DIR_ENV]))
    candidates += [here.parent / "msg", here / "msg"]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(p) / "share" / "sfs_ros" / "msg" for p in prefixes]
    for folder in candidates:
        if all((folder / f"{name}.msg").is_file() for name in SFS_MESSAGES):
            return folder
    raise FileNotFoundError(
        f"cannot find the sfs_ros message definitions ({', '.join(n + '.msg' for n in SFS_MESSAGES)}); "
        f"searched {', '.join(str(c) for c in candidates)}. Set {MSG_DIR_ENV} to the package's msg/ folder."
    )


@lru_cache(maxsize=4)
def _typestore(msg_dir: Path):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for name in SFS_MESSAGES:
        types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"sfs_ros/msg/{name}"))
    store.register(types)
    return store


def sfs_typestore(msg_dir: str | os.PathLike | None = None):
    """A ROS 2 Jazzy ``rosbags`` typestore with ``sfs_ros/msg/*`` registered (cached per folder)."""
    return _typestore(find_msg_dir(msg_dir).resolve())


# ---- reading -------------------------------------------------------------------------------
def storage_of(path: str | os.PathLike) -> str:
    """``mcap`` or ``sqlite3``: from ``metadata.yaml`` for a bag folder, else from the suffix."""
    path = Path(path)
    if path.is_dir():
        meta = yaml.safe_load((path / "metadata.yaml").read_text())
        storage = meta["rosbag2_bagfile_information"]["storage_identifier"]
    else:
        storage = {".mcap": "mcap", ".db3": "sqlite3"}.get(path.suffix, path.suffix)
    if storage not in STORAGES:
        raise BagError(f"bag '{path}' uses storage '{storage}' (supported: {', '.join(STORAGES)})")
    return storage


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int


@dataclass
class BagMessage:
    """One deserialised image message. ``index`` counts messages of its topic from 0;
    ``log_time_ns`` is the bag's receive time, ``stamp_ns`` the header stamp."""

    index: int
    log_time_ns: int
    msgtype: str
    msg: Any

    @property
    def stamp_ns(self) -> int:
        return stamp_to_ns(self.msg.header.stamp)

    @property
    def frame_id(self) -> str:
        return self.msg.header.frame_id

    def rgb(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB (decoded now; ``ValueError`` if malformed)."""
        return image_msg_to_rgb(self.msg) if self.msgtype == IMAGE else compressed_msg_to_rgb(self.msg)

    def labels(self) -> np.ndarray:
        """``(H, W)`` uint16 class ids of a mono8/mono16 (or PNG-compressed) label image."""
        return image_msg_to_labels(self.msg) if self.msgtype == IMAGE else compressed_msg_to_labels(self.msg)


class BagReader:
    """Image topics of a rosbag2 (folder with ``metadata.yaml``, or a bare ``.mcap``/``.db3``).

    >>> with BagReader("recording") as bag:  # doctest: +SKIP
    ...     topic = bag.select_image_topic()
    ...     for message in bag.messages(topic.name):
    ...         rgb = message.rgb()
    """

    def __init__(self, path: str | os.PathLike, typestore=None) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag '{self.path}' does not exist")
        self.storage = storage_of(self.path)
        self.typestore = typestore or sfs_typestore()
        with _unreadable(self.path):
            self._reader = Reader(self.path)

    def __enter__(self) -> BagReader:
        with _unreadable(self.path):
            self._reader.open()
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    def topics(self) -> list[TopicInfo]:
        return [TopicInfo(name, info.msgtype or "", info.msgcount) for name, info in sorted(self._reader.topics.items())]

    def image_topics(self) -> list[TopicInfo]:
        return [t for t in self.topics() if t.msgtype in IMAGE_TYPES]

    def select_image_topic(self, requested: str | None = None, exclude: tuple[str, ...] = ()) -> TopicInfo:
        """The topic named ``requested``, or the only image topic not in ``exclude`` (for example
        the ground-truth topic); ``BagError`` otherwise."""
        images = [t for t in self.image_topics() if t.name not in exclude]
        if requested:
            match = [t for t in self.topics() if t.name == requested]
            if not match:
                raise BagError(f"topic '{requested}' is not in bag '{self.path}' (image topics: {_names(images)})")
            if match[0].msgtype not in IMAGE_TYPES:
                raise BagError(f"topic '{requested}' has type {match[0].msgtype}, expected one of {', '.join(IMAGE_TYPES)}")
            return match[0]
        if not images:
            raise BagError(f"bag '{self.path}' has no sensor_msgs/Image or CompressedImage topic")
        if len(images) > 1:
            raise BagError(f"bag '{self.path}' has several image topics ({_names(images)}); choose one with --image-topic")
        return images[0]

    def messages(self, topic: str) -> Iterator[BagMessage]:
        """Messages of ``topic`` in receive-time order (the image topics' types only)."""
        connections = [c for c in self._reader.connections if c.topic == topic]
        if not connections:
            raise BagError(f"topic '{topic}' is not in bag '{self.path}'")
        msgtype = connections[0].msgtype
        if msgtype not in IMAGE_TYPES:
            raise BagError(f"topic '{topic}' has type {msgtype}, expected one of {', '.join(IMAGE_TYPES)}")
        stream = self._reader.messages(connections=connections)
        index = 0
        while True:
            with _unreadable(self.path, f"message {index} of '{topic}'"):
                item = next(stream, None)
                if item is None:
                    return
                connection, log_time_ns, raw = item
                msg = self.typestore.deserialize_cdr(raw, connection.msgtype)
            yield BagMessage(index, log_time_ns, msgtype, msg)
            index += 1


class _unreadable:
    """Re-raise a failure of the bag library (corrupt or truncated file, broken chunk) as a
    one-line :class:`BagError` naming the bag, so the CLI prints it instead of a traceback."""

    def __init__(self, path: Path, what: str = "") -> None:
        self.path, self.what = path, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, _tb) -> bool:
        if exc is None or isinstance(exc, (BagError, FileNotFoundError)) or not isinstance(exc, Exception):
            return False
        where = f" ({self.what})" if self.what else ""
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise BagError(f"cannot read bag '{self.path}'{where}: corrupt or truncated? "
                       f"{type(exc).__name__}: {first_line}") from exc


def _names(topics: list[TopicInfo]) -> str:
    return ", ".join(t.name for t in topics) or "none"


class StampMatcher:
    """Pair frames with messages of another topic by identical header stamp, streaming.

    ``messages`` must come in non-decreasing stamp order (true for a recorded camera topic).
    :meth:`get` is called with non-decreasing stamps; messages older than the asked stamp are
    dropped, so memory stays bounded by the stamp skew between the topics.
    """

    def __init__(self, messages: Iterator[BagMessage]) -> None:
        self._messages = iter(messages)
        self._pending: BagMessage | None = None
        self.unmatched = 0

    def get(self, stamp_ns: int) -> BagMessage | None:
        """The message stamped ``stamp_ns``, or ``None`` if there is none."""
        while True:
            if self._pending is None:
                self._pending = next(self._messages, None)
                if self._pending is None:
                    return None
            pending_stamp = self._pending.stamp_ns
            if pending_stamp > stamp_ns:
                return None
            message, self._pending = self._pending, None
            if pending_stamp == stamp_ns:
                return message
            self.unmatched += 1


# ---- writing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputTopics:
    """The node's output topics as recorded in a bag (the node's ``~/`` names under ``/sfs``)."""

    semantic: str = "/sfs/semantic"
    semantic_color: str = "/sfs/semantic_color"
    overlay: str = "/sfs/overlay"
    masks: str = "/sfs/masks"
    labels: str = "/sfs/labels"

    def types(self) -> dict[str, str]:
        msgtypes = {"semantic": IMAGE, "semantic_color": IMAGE, "overlay": IMAGE, "masks": LABELED_MASK_ARRAY, "labels": LABEL_TABLE}
        return {getattr(self, f.name): msgtypes[f.name] for f in fields(self)}


class MessageBuilder:
    """Build our output messages as ``rosbags`` dataclasses (pure: no I/O).

    The field layout follows ``msg/*.msg``; see :meth:`masks` for how a ``SemanticResult``
    becomes a ``LabeledMaskArray``.
    """

    def __init__(self, typestore) -> None:
        self.typestore = typestore
        types = typestore.types
        self._time = types["builtin_interfaces/msg/Time"]
        self._header = types["std_msgs/msg/Header"]
        self._image = types[IMAGE]
        self._roi = types["sensor_msgs/msg/RegionOfInterest"]
        self._mask = types[LABELED_MASK]
        self._mask_array = types[LABELED_MASK_ARRAY]
        self._label_table = types[LABEL_TABLE]

    def header(self, stamp_ns: int, frame_id: str):
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return self._header(stamp=self._time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def image(self, header, encoded: EncodedImage):
        return self._image(
            header=header, height=encoded.height, width=encoded.width, encoding=encoded.encoding,
            is_bigendian=encoded.is_bigendian, step=encoded.step, data=encoded.data,
        )

    def masks(self, header, result: SemanticResult):
        """``LabeledMaskArray``: ``instance_ids`` is ``result.instance_map`` (mono16) and mask ``i``
        is ``result.masks[i]`` (``instance_ids == i + 1``), with its mono8 crop and bbox."""
        masks = [
            self._mask(**{**fields, "candidate_scores": np.asarray(fields["candidate_scores"], dtype=np.float32)},
                       bbox=self._roi(x_offset=x, y_offset=y, height=h, width=w, do_rectify=False),
                       mask=self.image(header, encode_image(crop, "mono8")))
            for fields, (x, y, w, h), crop in result.labeled_masks()
        ]
        return self._mask_array(header=header, instance_ids=self.image(header, encode_image(result.instance_map, "mono16")), masks=masks)

    def label_table(self, header, table: LabelTable):
        entries = table.entries()
        return self._label_table(
            header=header,
            class_ids=np.array([e.class_id for e in entries], dtype=np.uint16),
            names=[e.name for e in entries],
            colors=np.array([c for e in entries for c in e.color], dtype=np.uint8),
        )


class ResultBagWriter:
    """Write pipeline results to a new rosbag2 (context manager).

    ``path`` must not exist (pass ``overwrite=True`` to replace an existing bag folder).
    ``color`` and ``overlay`` switch those topics off, like the node's ``output.*`` parameters.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "mcap", topics: OutputTopics = OutputTopics(),
                 typestore=None, color: bool = True, overlay: bool = True, overwrite: bool = False) -> None:
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {', '.join(STORAGES)}, got '{storage}'")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"output bag '{self.path}' exists (use --force to replace it)")
            is_bag = self.path.is_dir() and ((self.path / "metadata.yaml").exists() or not any(self.path.iterdir()))
            if not is_bag:
                raise FileExistsError(f"refusing to replace '{self.path}': it is not a rosbag2 folder")
            shutil.rmtree(self.path)
        self.storage = storage
        self.topics = topics
        self.typestore = typestore or sfs_typestore()
        self.build = MessageBuilder(self.typestore)
        self.color = color
        self.overlay = overlay
        self.counts: dict[str, int] = {}
        self._writer = None
        self._connections: dict[str, Any] = {}
        self._table_version: int | None = None

    def __enter__(self) -> ResultBagWriter:
        from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        zero = QosTime(sec=0, nsec=0)
        latched = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                      zero, zero, QosLiveliness.AUTOMATIC, zero, False)
        skip = {self.topics.semantic_color} if not self.color else set()
        skip |= {self.topics.overlay} if not self.overlay else set()
        for topic, msgtype in self.topics.types().items():
            if topic in skip:
                continue
            qos = [latched] if topic == self.topics.labels else []
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore, offered_qos_profiles=qos)
            self.counts[topic] = 0
        return self

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write(self, topic: str, msg, log_time_ns: int) -> None:
        connection = self._connections[topic]
        self._writer.write(connection, log_time_ns, self.typestore.serialize_cdr(msg, connection.msgtype))
        self.counts[topic] += 1

    def build_messages(self, result: SemanticResult, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> dict[str, Any]:
        """The messages of one frame by topic (``/sfs/labels`` only when the table changed).

        Rendering (colour, overlay) happens here, so timing this call measures the node's
        per-frame output work.
        """
        from sfs_core.visualize import colorize, overlay

        header = self.build.header(stamp_ns, frame_id)
        out = {self.topics.semantic: self.build.image(header, encode_image(result.label_map, "mono16"))}
        if self.color:
            palette = result.label_table.palette()
            out[self.topics.semantic_color] = self.build.image(header, encode_image(colorize(result.label_map, palette), "rgb8"))
        if self.overlay:
            out[self.topics.overlay] = self.build.image(header, encode_image(overlay(rgb, result), "rgb8"))
        out[self.topics.masks] = self.build.masks(header, result)
        if result.label_table.version != self._table_version:
            out[self.topics.labels] = self.build.label_table(header, result.label_table)
            self._table_version = result.label_table.version
        return out

    def write_messages(self, messages: dict[str, Any], log_time_ns: int) -> None:
        """Write what :meth:`build_messages` returned, logged at ``log_time_ns``."""
        if self._writer is None:
            raise RuntimeError("ResultBagWriter is not open (use it as a context manager)")
        for topic, msg in messages.items():
            self._write(topic, msg, log_time_ns)

    def write(self, result: SemanticResult, rgb: np.ndarray, stamp_ns: int, frame_id: str, log_time_ns: int) -> None:
        """Build and write one frame's messages."""
        self.write_messages(self.build_messages(result, rgb, stamp_ns, frame_id), log_time_ns)
