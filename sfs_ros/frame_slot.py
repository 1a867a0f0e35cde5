"""The hand-over between the subscription callbacks and the worker: only the newest frame waits."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrameSlot(Generic[T]):
    """A one-item mailbox that keeps the **latest** item.

    :meth:`put` never blocks: a newer frame replaces a waiting one, which is dropped (``put`` says
    so, for the caller to count). :meth:`take` blocks until a frame waits or the slot is closed.
    So a slow worker always processes the most recent frame, never a stale queued one.

    >>> slot = LatestFrameSlot()
    >>> slot.put("frame 1"), slot.put("frame 2"), slot.take()
    (False, True, 'frame 2')
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; returns True if it replaced a frame that was never taken."""
        with self._condition:
            replaced = self._item is not None
            self._item = item
            self._condition.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The waiting frame, or None after ``timeout`` seconds or once the slot is closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiting :meth:`take` with None; later calls return None at once."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
