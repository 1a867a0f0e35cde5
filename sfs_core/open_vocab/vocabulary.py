"""The open-vocabulary name list from ``open_vocab.vocabulary`` entries."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sfs_core.vocabularies import COCO_THINGS_80, DATASET_VOCABULARIES, normalize_label

BUILTIN_VOCABULARIES = {**DATASET_VOCABULARIES, "coco_things": COCO_THINGS_80}


def resolve_vocabulary(entries: Iterable[str]) -> list[str]:
    """Expand entries into unique normalised names, in order of first appearance.

    An entry is a built-in list (``coco``, ``coco_things``, ``ade20k``, ``cityscapes``), a ``.txt``
    file with one name per line (``#`` comments and blank lines skipped), or a literal name.

    >>> resolve_vocabulary(["cityscapes", "kite", "Traffic light"])[:3], len(resolve_vocabulary(["coco", "ade20k"]))
    (['road', 'sidewalk', 'building'], 230)
    """
    names: list[str] = []
    for entry in entries:
        if entry in BUILTIN_VOCABULARIES:
            names.extend(BUILTIN_VOCABULARIES[entry])
        elif entry.endswith(".txt"):
            lines = Path(os.path.expanduser(entry)).read_text().splitlines()
            names.extend(line.split("#")[0] for line in lines)
        else:
            names.append(entry)
    return list(dict.fromkeys(n for n in (normalize_label(name) for name in names) if n))
