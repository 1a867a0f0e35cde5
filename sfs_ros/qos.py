"""Quality-of-service profiles of the node's topics."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}

#: Image outputs and masks: reliable (so both reliable and best-effort subscribers connect),
#: newest message only.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)

#: ~/labels: latched, so a subscriber that joins late still gets the current table.
LABELS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """Image input: like ``qos_profile_sensor_data`` (volatile, keep-last) with the configured
    reliability (``best_effort`` or ``reliable``) and history depth."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE)
