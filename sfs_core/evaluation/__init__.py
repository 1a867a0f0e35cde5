"""Offline evaluation: mIoU with the standard protocols, label mapping, datasets and reports.

Modules: :mod:`.metrics` (confusion matrix, IoU), :mod:`.datasets` (Cityscapes, ADE20K layouts),
:mod:`.label_mapping` (our labels -> dataset classes), :mod:`.report` (JSON, percentiles, plot),
:mod:`.runner` (``sfs evaluate``).
"""

from sfs_core.evaluation.label_mapping import LabelMapper, LabelSpace, load_label_space
from sfs_core.evaluation.metrics import IGNORE_INDEX, ConfusionMatrix

__all__ = ["IGNORE_INDEX", "ConfusionMatrix", "LabelMapper", "LabelSpace", "load_label_space"]
