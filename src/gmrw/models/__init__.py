"""The GMRW network (plain torch) and checkpoint loading."""

from gmrw.models.checkpoint import CheckpointError, load_model
from gmrw.models.compile import compile_network, compiler_problem, is_compiled
from gmrw.models.cpu import flush_denormals
from gmrw.models.gmrw import GMRW

__all__ = [
    "GMRW",
    "CheckpointError",
    "compile_network",
    "compiler_problem",
    "flush_denormals",
    "is_compiled",
    "load_model",
]
