"""``gmrw-data download``: fetch Kinetics-700-2020, TAP-Vid and Kubric MOVi-E into our readers' layouts,
and the paper's released checkpoints.

* :mod:`~gmrw.datatools.download.registry`: where each dataset is published (the only module with URLs);
* :mod:`~gmrw.datatools.download.plan`: the files of a download, from the publisher's own index;
* :mod:`~gmrw.datatools.download.http`: resumable transfers with bounded retries;
* :mod:`~gmrw.datatools.download.archives`: all-or-nothing unpacking into our layouts;
* :mod:`~gmrw.datatools.download.runner`: the parallel run (:func:`~gmrw.datatools.download.runner.download`),
  skipping what is complete;
* :mod:`~gmrw.datatools.download.progress` and :mod:`~gmrw.datatools.download.report`: what it prints;
* :mod:`~gmrw.datatools.download.weights`: the paper's released checkpoints (``gmrw_weights``), one zip
  whose every checkpoint is loaded before it is kept.

Nothing is imported here, so that reading the registry (``gmrw-data --help``) stays cheap.
"""
