"""The open-vocabulary branch: BLIP captions and CLIP ranking of mask crops, run asynchronously.

Modules, one stage each:

- :mod:`~sfs_core.open_vocab.crops`: batched mask crops (``roi_align``).
- :mod:`~sfs_core.open_vocab.clip_ranker`: open_clip image/text features and top-K ranking.
- :mod:`~sfs_core.open_vocab.text_cache`: text embeddings cached on disk.
- :mod:`~sfs_core.open_vocab.captioner`: BLIP captions (transformers).
- :mod:`~sfs_core.open_vocab.noun_phrases`: spaCy or built-in noun phrases.
- :mod:`~sfs_core.open_vocab.vocabulary`: the vocabulary from config entries.
- :mod:`~sfs_core.open_vocab.labeler`: ``clip`` and ``caption`` modes on top of those.
- :mod:`~sfs_core.open_vocab.worker`: the rate-limited worker thread and its scheduling.
- :mod:`~sfs_core.open_vocab.branch`: one call per frame for the pipeline (asynchronous or not).

Fusion with the closed set lives in :mod:`sfs_core.open_vocab_fusion`, labels on tracks in
:mod:`sfs_core.tracking`. Importing this package loads neither open_clip nor transformers.
"""

from sfs_core.open_vocab.branch import OpenVocabBranch
from sfs_core.open_vocab.labeler import OpenVocabLabeler
from sfs_core.open_vocab.worker import OpenVocabWorker, Snapshot, WorkerStats, select_tracks
from sfs_core.open_vocab_fusion import OpenVocabLabels

__all__ = [
    "OpenVocabBranch", "OpenVocabLabeler", "OpenVocabLabels", "OpenVocabWorker", "Snapshot", "WorkerStats", "select_tracks",
]
