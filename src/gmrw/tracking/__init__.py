"""Point tracking with GMRW: ``track`` (the TAP-Vid protocol of the paper) and its building blocks.

``gmrw.track(model, video, queries, mode="chained")`` → tracks (B, N, T, 2) (x, y) pixels and
occluded (B, N, T) bool. The flow → track logic (:mod:`gmrw.tracking.core`) does not need a model,
so it can be checked on stored flows. ``track_source`` tracks a video read on demand (a long video
file) in bounded memory.
"""

from gmrw.tracking.api import ModelPairFlows, count_pairs, grid_queries, track
from gmrw.tracking.core import CONSISTENCY_THRESHOLD, chained_tracks, direct_tracks
from gmrw.tracking.options import (
    LIBRARY_DEFAULTS,
    METHODS,
    MODES,
    TrackingOptions,
    resolve_options,
    scaled_size,
)
from gmrw.tracking.sampling import inside, sample_flow
from gmrw.tracking.stream import FrameSource, TensorFrames, flow_cache_bytes, track_source

__all__ = [
    "CONSISTENCY_THRESHOLD",
    "FrameSource",
    "LIBRARY_DEFAULTS",
    "METHODS",
    "MODES",
    "ModelPairFlows",
    "TensorFrames",
    "TrackingOptions",
    "chained_tracks",
    "count_pairs",
    "direct_tracks",
    "flow_cache_bytes",
    "grid_queries",
    "inside",
    "resolve_options",
    "sample_flow",
    "scaled_size",
    "track",
    "track_source",
]
