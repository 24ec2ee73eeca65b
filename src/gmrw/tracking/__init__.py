"""Point tracking with GMRW: :class:`Predictor` (the object a user holds), :func:`track` (the one
tracking loop, the TAP-Vid protocol of the paper) and what they are made of.

``gmrw.Predictor(checkpoint)(video, queries=… | grid_size=… | dense=…)`` → tracks (N, T, 2) (x, y)
and occluded (N, T) in the video's pixels; ``predictor.online()`` tracks frames given one at a time.
``gmrw.track(model, video, queries, mode="chained")`` → tracks (B, N, T, 2) (x, y) pixels and
occluded (B, N, T) bool. Coordinates everywhere: ``docs/conventions.md``.

Modules, one job each: ``options`` (how a model tracks), ``inputs`` (checking what callers give),
``frames`` (frames and their coordinates), ``flows`` (flows at points, from a model or stored),
``modes`` (flows → tracks, chained and direct), ``precision`` (float32, or bfloat16 for the
encoder and transformer), ``driver`` (:func:`track`), ``predictor``,
``online``, ``files`` (the npz layouts, a video file to tracks on disk), ``baselines``.
"""

from gmrw.tracking.driver import track
from gmrw.tracking.files import load_tracks, save_dense, save_tracks
from gmrw.tracking.frames import FrameSource, TensorFrames, VideoFile, VideoReadError
from gmrw.tracking.online import OnlineSession
from gmrw.tracking.options import LIBRARY_DEFAULTS, TrackingOptions, resolve_options
from gmrw.tracking.predictor import Predictor

__all__ = [
    "LIBRARY_DEFAULTS",
    "FrameSource",
    "OnlineSession",
    "Predictor",
    "TensorFrames",
    "TrackingOptions",
    "VideoFile",
    "VideoReadError",
    "load_tracks",
    "resolve_options",
    "save_dense",
    "save_tracks",
    "track",
]
