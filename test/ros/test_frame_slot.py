"""The latest-frame hand-over between the subscription callbacks and the worker (no build needed)."""

from __future__ import annotations

import threading

from sfs_ros.frame_slot import LatestFrameSlot


def test_slot_keeps_the_latest_frame_and_reports_replacements():
    slot = LatestFrameSlot()
    replaced = [slot.put(i) for i in range(30)]
    assert replaced == [False] + [True] * 29
    assert slot.take() == 29
    assert slot.take(timeout=0.01) is None


def test_take_waits_for_a_frame():
    slot = LatestFrameSlot()
    taken = []
    worker = threading.Thread(target=lambda: taken.append(slot.take(timeout=5)))
    worker.start()
    slot.put("frame")
    worker.join(timeout=5)
    assert taken == ["frame"]


def test_close_wakes_a_waiting_take_and_ends_the_stream():
    slot = LatestFrameSlot()
    taken = []
    worker = threading.Thread(target=lambda: taken.append(slot.take()))
    worker.start()
    slot.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and taken == [None]
    slot.put("late frame")
    assert slot.take() is None
