"""The GMRW network (plain torch). Building one from a checkpoint: :func:`gmrw.checkpoint.load_model`."""

from gmrw.models.compile import compile_network, compiler_problem, is_compiled
from gmrw.models.cpu import flush_denormals
from gmrw.models.gmrw import GMRW

__all__ = [
    "GMRW",
    "compile_network",
    "compiler_problem",
    "flush_denormals",
    "is_compiled",
]
