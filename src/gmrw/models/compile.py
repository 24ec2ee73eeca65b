"""``torch.compile`` for GMRW: the backbone and the feature transformer, compiled in place.

GMRW has no ``forward``: training reads :meth:`~gmrw.models.GMRW.walk_transitions`, tracking
:meth:`~gmrw.models.GMRW.encode` / :meth:`~gmrw.models.GMRW.refine`. Both go through the two
submodules that hold the network's work (the CNN backbone and the transformer), so those are what
gets compiled. ``nn.Module.compile`` keeps the module objects and their parameter names, so state
dicts, checkpoints and optimisers see the same model as in eager mode. The global matching (a
softmax over every cell) and the walk's custom autograd stay eager.

The first call at each new input shape compiles (tens of seconds to minutes on a CPU); later calls
reuse the compiled code. On the CPU, inductor builds C++ and needs a compiler on the PATH.
"""

from __future__ import annotations

import os
import shutil

from torch import nn

#: Names of the submodules of a GMRW that are compiled.
COMPILED_PARTS = ("backbone", "transformer")


def compiler_problem() -> str | None:
    """Why ``torch.compile``'s default backend cannot build code here, or None if it can.

    Inductor compiles C++ for the CPU (and Triton's launcher for CUDA) with the system compiler.
    """
    candidates = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
    if any(name and shutil.which(name) for name in candidates):
        return None
    return "torch.compile needs a C++ compiler (g++ or clang++) on the PATH; none was found"


def is_compiled(model: nn.Module) -> bool:
    """True if :func:`compile_network` compiled ``model``'s parts."""
    return all(
        getattr(getattr(model, name), "_compiled_call_impl", None) is not None for name in COMPILED_PARTS
    )


def compile_network(model: nn.Module, **options) -> nn.Module:
    """Compile a GMRW's backbone and transformer in place (``options``: ``torch.compile``
    keyword arguments, e.g. ``mode="max-autotune"``); returns ``model``. Calling it again does
    nothing. RuntimeError if no compiler is available (:func:`compiler_problem`)."""
    if is_compiled(model):
        return model
    problem = compiler_problem()
    if problem is not None:
        raise RuntimeError(problem)
    for name in COMPILED_PARTS:
        getattr(model, name).compile(**options)
    return model
