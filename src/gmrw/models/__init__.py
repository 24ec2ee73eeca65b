"""The GMRW network (plain torch) and checkpoint loading."""

from gmrw.models.checkpoint import CheckpointError, load_model
from gmrw.models.cpu import flush_denormals
from gmrw.models.gmrw import GMRW

__all__ = ["GMRW", "CheckpointError", "flush_denormals", "load_model"]
