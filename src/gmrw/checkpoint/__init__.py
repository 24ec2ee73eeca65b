"""Checkpoints, one protocol: which file to read, how to read it, how to write it.

* :mod:`~gmrw.checkpoint.choose`: a file (checked for damage when resuming) or a run directory's
  newest intact checkpoint (:func:`choose_checkpoint`), for resuming, evaluating and tracking;
* :mod:`~gmrw.checkpoint.read`: the paper's DDP-saved ``.pth``, our Lightning ``.ckpt`` or a state
  dict, through torch's weights-only loader, into a :class:`~gmrw.models.GMRW` (:func:`load_model`,
  public as ``gmrw.load_model``);
* :mod:`~gmrw.checkpoint.write`: atomic writes, and the trainer's Lightning ``CheckpointIO`` plug-in
  that uses them (``configs/trainer/default.yaml``);
* :mod:`~gmrw.checkpoint.layout`: where a run keeps its checkpoints and what an unfinished write is called.

This face exports the reading and choosing side only: :mod:`~gmrw.checkpoint.write` imports
Lightning, which loading a model for tracking never needs.
"""

from gmrw.checkpoint.choose import CheckpointProblem, choose_checkpoint
from gmrw.checkpoint.read import CheckpointError, load_model

__all__ = ["CheckpointError", "CheckpointProblem", "choose_checkpoint", "load_model"]
