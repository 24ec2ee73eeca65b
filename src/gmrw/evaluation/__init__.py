"""Tracking and scoring TAP-Vid examples: what validation during training and ``gmrw-eval`` share.

* :func:`~gmrw.evaluation.scoring.track_and_score`: one batch through :func:`gmrw.track` into a
  :class:`~gmrw.metrics.TapVidMetric` (the training module's ``validation_step`` and
  :class:`~gmrw.evaluation.module.TapVidEvaluation`'s ``test_step``);
* :mod:`~gmrw.evaluation.module`: the LightningModule ``gmrw-eval`` tests with, and its per-video report;
* :mod:`~gmrw.evaluation.run`: ``evaluate(cfg)``, from a composed ``eval`` config to ``metrics.json``.
"""
