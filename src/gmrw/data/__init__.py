"""Data, split by job.

* ``readers/``: files as their publishers distribute them (Kinetics folders, MOVi-E tfrecords,
  TAP-Vid pickles and tsv) read into arrays and examples; no torch datasets, no Lightning.
* datasets: training clips (:mod:`~gmrw.data.kinetics`, :mod:`~gmrw.data.kubric`,
  :mod:`~gmrw.data.synthetic`) and TAP-Vid examples (:mod:`~gmrw.data.tapvid`,
  :mod:`~gmrw.data.photo_videos`, :mod:`~gmrw.data.synthetic`), over the crop pipeline
  (:mod:`~gmrw.data.crops`), the query sampling (:mod:`~gmrw.data.queries`) and the procedural
  world (``scenes/``);
* :mod:`~gmrw.data.loaders` (step-stream training loader, rank-sharded evaluation loader) and
  :mod:`~gmrw.data.modules` (the two LightningDataModules, which take their datasets from config).

The ``gmrw-data`` command's tools (check a folder, download a dataset, write a tiny one) are not
datasets: they live beside this package, in :mod:`gmrw.datatools`.
"""
