"""Point tracking with GMRW: ``track`` (the TAP-Vid protocol of the paper) and its building blocks.

``gmrw.track(model, video, queries, mode="chained")`` → tracks (B, N, T, 2) (x, y) pixels and
occluded (B, N, T) bool. The flow → track logic (:mod:`gmrw.tracking.core`) does not need a model,
so it can be checked on stored flows.
"""

from gmrw.tracking.api import METHODS, MODES, ModelPairFlows, count_pairs, grid_queries, track
from gmrw.tracking.core import CONSISTENCY_THRESHOLD, chained_tracks, direct_tracks
from gmrw.tracking.sampling import inside, sample_flow

__all__ = [
    "CONSISTENCY_THRESHOLD",
    "METHODS",
    "MODES",
    "ModelPairFlows",
    "chained_tracks",
    "count_pairs",
    "direct_tracks",
    "grid_queries",
    "inside",
    "sample_flow",
    "track",
]
