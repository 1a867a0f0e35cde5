import threading

import numpy as np
import pytest

from sfs_core.labels import MAX_CLASSES, UNIDENTIFIED_ID, UNLABELED_ID, LabelTable, LabelTableFull, label_color
from sfs_core.vocabularies import ADE20K_150, COCO_PANOPTIC_133, normalize_label


def test_reserved_ids_and_stable_appends():
    table = LabelTable(["wall", "person"])
    assert table.name_of(UNLABELED_ID) == "unlabeled" and table.name_of(UNIDENTIFIED_ID) == "unidentified"
    assert table.id_of("wall") == 2 and table.id_of("person") == 3
    version = table.version
    assert table.add("Person") == 3 and table.version == version  # known name: same id, no growth
    assert table.add("kite") == 4 and table.version == version + 1


def test_coco_and_ade_share_normalised_names():
    table = LabelTable(ADE20K_150)
    size = len(table)
    coco_ids = table.lookup(COCO_PANOPTIC_133)
    assert coco_ids[COCO_PANOPTIC_133.index("wall-other-merged")] == table.id_of("wall")
    assert coco_ids[COCO_PANOPTIC_133.index("person")] == table.id_of("person")
    assert len(table) > size  # COCO-only classes (e.g. "kite") were appended
    assert normalize_label("kite") in table.names


def test_colors_are_deterministic_and_distinct():
    palette = LabelTable(ADE20K_150).palette()
    assert palette.shape == (152, 3) and palette.dtype == np.uint8
    assert tuple(palette[0]) == (0, 0, 0)
    assert len({tuple(c) for c in palette}) == len(palette)
    assert label_color(57) == label_color(57)


def test_concurrent_adds_never_reuse_ids():
    table = LabelTable()
    names = [f"thing {i}" for i in range(200)]
    threads = [threading.Thread(target=lambda: [table.add(n) for n in names]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(table) == 202 and len(set(table.names)) == 202


def test_a_full_table_refuses_new_names_and_keeps_the_known_ones():
    table = LabelTable(["wall"])
    table.limit_growth(2)
    assert table.capacity == 5  # unlabeled, unidentified, wall + 2
    assert (table.add("kite"), table.add("boat")) == (3, 4)
    with pytest.raises(LabelTableFull, match="full .5 names.: 'car' not added"):
        table.add("car")
    assert table.refused == 1 and len(table) == 5 and table.version == 3
    assert table.add("Kite") == 3 and table.add("wall") == 2  # known names still resolve
    table.limit_growth(10**6)
    assert table.capacity == MAX_CLASSES  # ids are published as uint16
