"""A synthetic camera recording as a rosbag2, for ``sfs replay --gt-topic``.

Two topics with identical header stamps: ``/camera/image_raw`` (``sensor_msgs/Image`` rgb8) and
``/camera/semantic_gt`` (mono8 class ids into :data:`~sfs_core.synthetic.shapes.CLASS_NAMES`).
Messages are built with :mod:`sfs_core.bags`' typestore and message builder, so the bag is read
back by the same code as a real recording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sfs_core.bags import IMAGE, STORAGES, BagError, MessageBuilder, sfs_typestore
from sfs_core.image_codec import encode_image
from sfs_core.synthetic.scenes import Scene


@dataclass(frozen=True)
class BagTopics:
    image: str = "/camera/image_raw"
    ground_truth: str = "/camera/semantic_gt"
    frame_id: str = "camera"


START_NS = 1_700_000_000 * 1_000_000_000


def write_synthetic_bag(path: Path, frames: Iterable[Scene], rate_hz: float = 10.0, topics: BagTopics = BagTopics(),
                        storage: str = "mcap") -> int:
    """Write ``frames`` at ``rate_hz`` (stamps from a fixed start, receive time = stamp + 5 ms);
    returns the number of frames. ``path`` must not exist."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise BagError(f"storage must be one of {', '.join(STORAGES)}, got '{storage}'")
    store = sfs_typestore()
    build = MessageBuilder(store)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    count = 0
    with Writer(Path(path), version=9, storage_plugin=plugin) as writer:
        image_conn = writer.add_connection(topics.image, IMAGE, typestore=store)
        gt_conn = writer.add_connection(topics.ground_truth, IMAGE, typestore=store)
        for index, scene in enumerate(frames):
            stamp = START_NS + round(index * 1e9 / rate_hz)
            header = build.header(stamp, topics.frame_id)
            image = build.image(header, encode_image(scene.image, "rgb8"))
            labels = build.image(header, encode_image(scene.semantic_map, "mono8"))
            writer.write(image_conn, stamp + 5_000_000, store.serialize_cdr(image, IMAGE))
            writer.write(gt_conn, stamp + 5_000_000, store.serialize_cdr(labels, IMAGE))
            count += 1
    return count
