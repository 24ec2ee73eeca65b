"""gmrw: self-supervised any-point tracking with a global-matching random walk.

The names below are imported lazily so that ``import gmrw`` stays cheap and the command-line
tools start fast.

    model = gmrw.load_model("kubric_73k.pth")                   # or a gmrw .ckpt, or None
    tracks, occluded = gmrw.track(model, video, queries)         # video (B,T,H,W,3) in [0,255]
    predictor = gmrw.Predictor("kubric_73k.pth")                 # the object for your own videos
    tracks, occluded = predictor("clip.mp4", grid_size=10)       # (N,T,2) (x,y), (N,T), video pixels
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "GMRW": ("gmrw.models", "GMRW"),
    "load_model": ("gmrw.checkpoint", "load_model"),
    "flush_denormals": ("gmrw.models", "flush_denormals"),
    "track": ("gmrw.tracking", "track"),
    "Predictor": ("gmrw.tracking", "Predictor"),
}

__all__ = ["GMRW", "Predictor", "__version__", "flush_denormals", "load_model", "track"]

if TYPE_CHECKING:  # pragma: no cover
    from gmrw.checkpoint import load_model
    from gmrw.models import GMRW, flush_denormals
    from gmrw.tracking import Predictor, track


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gmrw' has no attribute {name!r}")
