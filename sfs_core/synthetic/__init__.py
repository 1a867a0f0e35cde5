"""A synthetic world of coloured shapes and tiny models trained in it, so that the pipeline's
accuracy is measurable without downloaded weights or datasets (issue 8).

Modules, one job each:

- :mod:`~sfs_core.synthetic.shapes`: the six shape classes and their outlines.
- :mod:`~sfs_core.synthetic.textures`: procedural backgrounds and object fills.
- :mod:`~sfs_core.synthetic.scenes`: deterministic scene sampling and rendering (image, instance
  map, semantic map), and moving sequences.
- :mod:`~sfs_core.synthetic.datasets`: the Cityscapes layout that ``sfs evaluate`` reads.
- :mod:`~sfs_core.synthetic.bag`: a rosbag2 with an image and a ground-truth topic for ``sfs replay``.
- :mod:`~sfs_core.synthetic.yolo_dataset`: the YOLO-seg layout for ultralytics' trainer.
- :mod:`~sfs_core.synthetic.recipes`: typed training recipes and their cache keys.
- :mod:`~sfs_core.synthetic.training`, :mod:`~sfs_core.synthetic.train_masks`,
  :mod:`~sfs_core.synthetic.train_closed_set`, :mod:`~sfs_core.synthetic.train_clip`: the trainers
  (ultralytics YOLOv8-seg, transformers SegFormer, open_clip CLIP).
- :mod:`~sfs_core.synthetic.clip_model`: the tiny CLIP as an open_clip ``local-dir:`` folder.
- :mod:`~sfs_core.synthetic.cache`: train-or-reuse, keyed by recipe.
- :mod:`~sfs_core.synthetic.init`: ``sfs models init-synthetic DIR``.
- :mod:`~sfs_core.synthetic.accuracy`, :mod:`~sfs_core.synthetic.measure`: accuracy on held-out scenes.

Importing this package loads no ML library.
"""
