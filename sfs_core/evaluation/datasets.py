"""The two standard validation sets, in their official folder layouts.

* **Cityscapes** (19 classes): ``leftImg8bit/val/<city>/<name>_leftImg8bit.png`` with
  ``gtFine/val/<city>/<name>_gtFine_labelTrainIds.png`` (uint8, 255 = ignore), as written by
  ``cityscapesscripts/preparation/createTrainIdLabelImgs.py``. Where only
  ``*_gtFine_labelIds.png`` exist, the official id -> train-id table is applied on the fly.
* **ADE20K** / SceneParsing (150 classes): ``ADEChallengeData2016/images/validation/*.jpg`` with
  ``annotations/validation/*.png`` (0 = other). ``reduce_zero_label`` maps 0 -> 255 (ignored)
  and k -> k - 1, exactly as mmsegmentation does.

``root`` may be the dataset folder itself or its parent. Samples are sorted by id, so
``--limit N`` always picks the same images and resumed runs line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sfs_core.evaluation.metrics import IGNORE_INDEX
from sfs_core.vocabularies import ADE20K_150, CITYSCAPES_19

# cityscapesscripts/helpers/labels.py: labelId -> trainId for the 19 evaluated classes.
_CITYSCAPES_LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                              24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
CITYSCAPES_ID_TO_TRAIN_ID[list(_CITYSCAPES_LABEL_TO_TRAIN)] = list(_CITYSCAPES_LABEL_TO_TRAIN.values())


@dataclass(frozen=True)
class Sample:
    """One image and its label file. ``id`` is a relative, extension-free name (``city/stem``)."""

    id: str
    image: Path
    label: Path


def read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB; ``ValueError`` if OpenCV cannot read the file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image '{path}'")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label_png(path: Path) -> np.ndarray:
    """A one-channel 8- or 16-bit label PNG as stored; ``ValueError`` if unreadable or not 2-D."""
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise ValueError(f"cannot read label image '{path}'")
    if labels.ndim != 2:
        raise ValueError(f"label image '{path}' has shape {labels.shape}, expected one channel")
    return labels


def reduce_zero_label(labels: np.ndarray) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: 0 -> 255, k -> k - 1 (and 255 stays 255), as uint8.

    >>> reduce_zero_label(np.array([0, 1, 150, 255], np.uint8)).tolist()
    [255, 0, 149, 255]
    """
    if labels.size and int(labels.max()) > 255:
        raise ValueError("reduce_zero_label expects 8-bit labels")
    out = labels.astype(np.uint8) - np.uint8(1)  # 0 wraps to 255
    out[out == 254] = IGNORE_INDEX  # original 255 (ignore) stays ignore
    return out


class SegmentationDataset:
    """Base: a named class list, an ignore index and sorted :class:`Sample` s."""

    name: str = ""
    classes: tuple[str, ...] = ()
    ignore_index: int = IGNORE_INDEX
    reduce_zero_label: bool = False

    def __init__(self, root: str | Path, split: str = "val") -> None:
        self.root = Path(root).expanduser()
        self.split = split

    def samples(self, limit: int | None = None) -> list[Sample]:
        found = sorted(self._find(), key=lambda s: s.id)
        if not found:
            raise FileNotFoundError(f"no {self.name} images found under '{self.root}' ({self.layout()})")
        return found[:limit] if limit else found

    def load_image(self, sample: Sample) -> np.ndarray:
        return read_rgb(sample.image)

    def load_label(self, sample: Sample) -> np.ndarray:
        """``(H, W)`` uint8 class ids in ``0..C-1`` or ``ignore_index``."""
        raise NotImplementedError

    def layout(self) -> str:
        raise NotImplementedError

    def _find(self) -> list[Sample]:
        raise NotImplementedError


class Cityscapes(SegmentationDataset):
    name = "cityscapes"
    classes = CITYSCAPES_19

    def layout(self) -> str:
        return f"expected leftImg8bit/{self.split}/<city>/*_leftImg8bit.png and gtFine/{self.split}/<city>/*_gtFine_labelTrainIds.png"

    def _base(self) -> Path:
        for base in (self.root, self.root / "cityscapes", self.root / "Cityscapes"):
            if (base / "leftImg8bit" / self.split).is_dir():
                return base
        raise FileNotFoundError(f"no Cityscapes folder under '{self.root}': {self.layout()}")

    def _find(self) -> list[Sample]:
        base = self._base()
        images = base / "leftImg8bit" / self.split
        samples = []
        for image in images.glob("*/*_leftImg8bit.png"):
            city, stem = image.parent.name, image.name[: -len("_leftImg8bit.png")]
            gt_dir = base / "gtFine" / self.split / city
            label = gt_dir / f"{stem}_gtFine_labelTrainIds.png"
            if not label.exists() and (gt_dir / f"{stem}_gtFine_labelIds.png").exists():
                label = gt_dir / f"{stem}_gtFine_labelIds.png"
            if not label.exists():
                raise FileNotFoundError(f"no ground truth for '{image}': expected '{gt_dir / (stem + '_gtFine_labelTrainIds.png')}'")
            samples.append(Sample(f"{city}/{stem}", image, label))
        return samples

    def load_label(self, sample: Sample) -> np.ndarray:
        labels = read_label_png(sample.label)
        if sample.label.name.endswith("_gtFine_labelIds.png"):
            return CITYSCAPES_ID_TO_TRAIN_ID[labels]
        return labels.astype(np.uint8)


class ADE20K(SegmentationDataset):
    name = "ade20k"
    classes = ADE20K_150
    reduce_zero_label = True

    def __init__(self, root: str | Path, split: str = "val") -> None:
        super().__init__(root, "validation" if split == "val" else split)

    def layout(self) -> str:
        return f"expected ADEChallengeData2016/images/{self.split}/*.jpg and ADEChallengeData2016/annotations/{self.split}/*.png"

    def _base(self) -> Path:
        for base in (self.root, self.root / "ADEChallengeData2016"):
            if (base / "images" / self.split).is_dir():
                return base
        raise FileNotFoundError(f"no ADE20K folder under '{self.root}': {self.layout()}")

    def _find(self) -> list[Sample]:
        base = self._base()
        samples = []
        for image in (base / "images" / self.split).glob("*.jpg"):
            label = base / "annotations" / self.split / f"{image.stem}.png"
            if not label.exists():
                raise FileNotFoundError(f"no ground truth for '{image}': expected '{label}'")
            samples.append(Sample(image.stem, image, label))
        return samples

    def load_label(self, sample: Sample) -> np.ndarray:
        return reduce_zero_label(read_label_png(sample.label))


DATASETS: dict[str, type[SegmentationDataset]] = {"cityscapes": Cityscapes, "ade20k": ADE20K}


def open_dataset(name: str, root: str | Path, split: str = "val") -> SegmentationDataset:
    """The dataset called ``name`` (``cityscapes`` or ``ade20k``) under ``root``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    return DATASETS[name](root, split)
