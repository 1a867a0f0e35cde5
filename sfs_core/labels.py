"""The label table: stable class ids, names and colours shared by every output."""

from __future__ import annotations

import colorsys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from sfs_core.vocabularies import normalize_label

UNLABELED_ID = 0
UNIDENTIFIED_ID = 1
UNLABELED = "unlabeled"
UNIDENTIFIED = "unidentified"
#: Ids are published as uint16 (label images, ``LabeledMask.class_id``).
MAX_CLASSES = int(np.iinfo(np.uint16).max) + 1


class LabelTableFull(OverflowError):
    """A new name did not fit: the table already holds :attr:`LabelTable.capacity` names."""


class LabelSource(IntEnum):
    """Where a mask's label came from (values match ``sfs_ros/msg/LabeledMask``)."""

    CLOSED_SET = 0
    OPEN_VOCAB = 1
    UNIDENTIFIED = 2


def label_color(class_id: int) -> tuple[int, int, int]:
    """Deterministic, well-separated RGB colour for a class id (golden-ratio hue walk).

    Id 0 (unlabeled) is black; neighbouring ids get distant hues.
    """
    if class_id == UNLABELED_ID:
        return (0, 0, 0)
    if class_id == UNIDENTIFIED_ID:
        return (128, 128, 128)
    hue = (class_id * 0.618033988749895) % 1.0
    saturation = (0.95, 0.75, 0.55)[class_id % 3]
    value = (0.95, 0.8, 0.65)[(class_id // 3) % 3]
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


@dataclass(frozen=True)
class LabelEntry:
    class_id: int
    name: str
    color: tuple[int, int, int]


class LabelTable:
    """Append-only, thread-safe map between class ids and names.

    Ids 0 and 1 are reserved for ``unlabeled`` and ``unidentified``; names are normalised with
    :func:`normalize_label`, so "wall-other-merged" (COCO) and "wall" (ADE20K) share one id.
    Ids are never reused, so a published id keeps its meaning for the whole run.

    >>> table = LabelTable(["wall", "person"])
    >>> table.id_of("person"), table.add("kite"), table.name_of(4)
    (3, 4, 'kite')
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._names: list[str] = [UNLABELED, UNIDENTIFIED]
        self._ids: dict[str, int] = {UNLABELED: UNLABELED_ID, UNIDENTIFIED: UNIDENTIFIED_ID}
        self.version = 0
        #: Most names the table holds; :meth:`add` refuses new ones beyond it (:meth:`limit_growth`).
        self.capacity = MAX_CLASSES
        #: Times :meth:`add` refused a new name because the table was full.
        self.refused = 0
        self._palette = np.zeros((0, 3), dtype=np.uint8)
        for name in names:
            self.add(name)

    def add(self, name: str) -> int:
        """Return the id of ``name``, appending it if new (bumps :attr:`version`).

        Raises :class:`LabelTableFull` for a new name once the table holds :attr:`capacity` names.
        """
        key = normalize_label(name)
        with self._lock:
            class_id = self._ids.get(key)
            if class_id is None:
                class_id = len(self._names)
                if class_id >= self.capacity:
                    self.refused += 1
                    raise LabelTableFull(f"label table is full ({self.capacity} names): '{key}' not added")
                self._names.append(key)
                self._ids[key] = class_id
                self.version += 1
            return class_id

    def limit_growth(self, new_names: int) -> None:
        """Let the table take at most ``new_names`` names beyond those it holds now."""
        with self._lock:
            self.capacity = min(len(self._names) + new_names, MAX_CLASSES)

    def lookup(self, names: Iterable[str]) -> np.ndarray:
        """Table ids for a model's vocabulary (adding new names), as an int64 lookup array."""
        return np.array([self.add(n) for n in names], dtype=np.int64)

    def id_of(self, name: str) -> int | None:
        with self._lock:
            return self._ids.get(normalize_label(name))

    def name_of(self, class_id: int) -> str:
        with self._lock:
            return self._names[class_id]

    def __len__(self) -> int:
        with self._lock:
            return len(self._names)

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._names)

    def entries(self) -> list[LabelEntry]:
        return [LabelEntry(i, n, label_color(i)) for i, n in enumerate(self.names)]

    def palette(self, size: int | None = None) -> np.ndarray:
        """``(max(len, size), 3)`` uint8 RGB colours indexed by class id (cached: ids never change colour)."""
        count = max(len(self), size or 0)
        if len(self._palette) < count:
            self._palette = np.array([label_color(i) for i in range(count)], dtype=np.uint8).reshape(-1, 3)
        return self._palette[:count]

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "labels": [{"id": e.class_id, "name": e.name, "color": list(e.color)} for e in self.entries()],
        }
