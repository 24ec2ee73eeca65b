"""Point tracking with GMRW: ``Predictor`` (the object a user holds), ``track`` (the TAP-Vid
protocol of the paper) and their building blocks.

``gmrw.Predictor(checkpoint)(video, queries=… | grid_size=… | dense=…)`` → tracks (N, T, 2) (x, y)
and occluded (N, T) in the video's pixels; ``predictor.online()`` tracks frames given one at a time.
``gmrw.track(model, video, queries, mode="chained")`` → tracks (B, N, T, 2) (x, y) pixels and
occluded (B, N, T) bool. The flow → track logic (:mod:`gmrw.tracking.core`) does not need a model,
so it can be checked on stored flows. ``track_source`` tracks a video read on demand (a long video
file) in bounded memory.
"""

from gmrw.choices import FLOW_METHODS, TRACKING_MODES
from gmrw.tracking.api import count_pairs, grid_queries, run_tracking, track
from gmrw.tracking.core import CONSISTENCY_THRESHOLD, chained_tracks, direct_tracks, forward_step
from gmrw.tracking.flow_sampling import inside, sample_flow
from gmrw.tracking.flows import FlowReader, ModelPairFlows
from gmrw.tracking.frames import FrameSource, ResizedFrames, TensorFrames
from gmrw.tracking.inputs import dense_queries
from gmrw.tracking.online import OnlineSession
from gmrw.tracking.options import LIBRARY_DEFAULTS, TrackingOptions, resolve_options, scaled_size
from gmrw.tracking.outputs import load_tracks, save_dense, save_tracks
from gmrw.tracking.predictor import DEFAULT_SHORT_SIDE, Predictor
from gmrw.tracking.stream import flow_cache_bytes, track_source
from gmrw.tracking.video_file import VideoFile, VideoReadError
from gmrw.video import resize_frames

__all__ = [
    "CONSISTENCY_THRESHOLD",
    "DEFAULT_SHORT_SIDE",
    "FlowReader",
    "FrameSource",
    "FLOW_METHODS",
    "LIBRARY_DEFAULTS",
    "ModelPairFlows",
    "OnlineSession",
    "Predictor",
    "ResizedFrames",
    "TRACKING_MODES",
    "TensorFrames",
    "TrackingOptions",
    "VideoFile",
    "VideoReadError",
    "chained_tracks",
    "count_pairs",
    "dense_queries",
    "direct_tracks",
    "flow_cache_bytes",
    "forward_step",
    "grid_queries",
    "inside",
    "load_tracks",
    "resize_frames",
    "resolve_options",
    "run_tracking",
    "sample_flow",
    "save_dense",
    "save_tracks",
    "scaled_size",
    "track",
    "track_source",
]
