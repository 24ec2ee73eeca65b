"""gmrw: self-supervised any-point tracking with a global-matching random walk.

What a user needs, imported lazily so that ``import gmrw`` stays cheap and the command-line tools
start fast. Coordinates everywhere: queries (t, y, x), tracks (x, y), pixels of the video, pixel
centres at integers (``docs/conventions.md``).

    predictor = gmrw.Predictor("kubric_73k.pth")                 # the object for your own videos
    tracks, occluded = predictor("clip.mp4", grid_size=10)       # (N,T,2) (x,y), (N,T)
    session = predictor.online()                                 # frames one at a time
    model = gmrw.load_model("kubric_73k.pth")                    # or a gmrw .ckpt, or None
    tracks, occluded = gmrw.track(model, video, queries)         # video (B,T,H,W,3) in [0,255]
    gmrw.write_tracks_video("tracks.mp4", frames, tracks[0], occluded[0], fps=25)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    # the network and its weights
    "GMRW": ("gmrw.models", "GMRW"),
    "load_model": ("gmrw.checkpoint", "load_model"),
    "flush_denormals": ("gmrw.models", "flush_denormals"),
    # tracking
    "Predictor": ("gmrw.tracking", "Predictor"),
    "OnlineSession": ("gmrw.tracking", "OnlineSession"),
    "track": ("gmrw.tracking", "track"),
    "TrackingOptions": ("gmrw.tracking", "TrackingOptions"),
    "FrameSource": ("gmrw.tracking", "FrameSource"),
    "VideoFile": ("gmrw.tracking", "VideoFile"),
    # tracks on disk and on screen
    "load_tracks": ("gmrw.tracking", "load_tracks"),
    "save_tracks": ("gmrw.tracking", "save_tracks"),
    "write_tracks_video": ("gmrw.viz.tracks", "write_tracks_video"),
}

__all__ = [
    "GMRW",
    "FrameSource",
    "OnlineSession",
    "Predictor",
    "TrackingOptions",
    "VideoFile",
    "__version__",
    "flush_denormals",
    "load_model",
    "load_tracks",
    "save_tracks",
    "track",
    "write_tracks_video",
]

if TYPE_CHECKING:  # pragma: no cover
    from gmrw.checkpoint import load_model
    from gmrw.models import GMRW, flush_denormals
    from gmrw.tracking import (
        FrameSource,
        OnlineSession,
        Predictor,
        TrackingOptions,
        VideoFile,
        load_tracks,
        save_tracks,
        track,
    )
    from gmrw.viz.tracks import write_tracks_video


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gmrw' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
