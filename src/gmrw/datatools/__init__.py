"""The ``gmrw-data`` command's tools: what a user runs on a dataset before training on it.

* :mod:`~gmrw.datatools.check`: validate a folder or file (counts, resolutions, frame counts, bad files);
* ``download/``: fetch a dataset from its publisher into the layout :mod:`gmrw.data`'s readers take;
* ``tiny/``: write a tiny dataset in the real on-disk format (smoke runs, tests, benchmarks).

These sit above :mod:`gmrw.data` (they read through its readers); nothing in the library imports them.
"""
