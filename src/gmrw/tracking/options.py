"""How a model tracks: the options of :func:`gmrw.track`, their checks, and where defaults come from.

An option left as ``None`` in a call takes the value the model carries in ``tracking_defaults``
(our checkpoints record how their model tracks best, the paper's weights get the paper's setting;
see :func:`gmrw.load_model`), else the library default below. So ``gmrw.track(model, video,
queries)`` with no options is the call that fits the model it is given, and
:class:`gmrw.Predictor` resolves its options the same way.

The frames the model sees are set either by ``upsample_factor`` (the video's own size times this:
the paper's ×2 / ×4 on TAP-Vid's 256×256 frames) or by ``processing_size``, their short side (a
model trained on 128×128 crops tracks best near that scale, whatever the video's size); sides are
rounded to multiples of 8. Tracks are always in the input video's pixels (``docs/conventions.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from gmrw.choices import TRACKING_MODES, check_choice, check_flow_method
from gmrw.tracking.frames import SIZE_MULTIPLE, scaled_size

# fine_size=0 (the video's own size) stops at this multiple of the global match's short side. There
# the step's ±3-cell half-resolution window (±6 px of its frames) reaches ±3/4 of a coarse cell (4 px
# of the global match's frames, 4·scale of the step's) and, further up, less and less of a coarse
# miss, while the maps' cost grows with the pixels: on one AMD EPYC thread 7.5 s and 190 MiB a 1080p
# frame at its own size, 1.2 s and 43 MiB at the cap (512x912), against 0.43 s for the global
# match's encoding at 256 px. The long recipe's maps at 1.9x (640x480 footage at 256 px) were its
# best measured (docs/results.md).
FINE_OWN_SIZE_MAX_SCALE = 2


@dataclass(frozen=True)
class TrackingOptions:
    """The options of :func:`gmrw.track` that say how frames become tracks.

    mode: ``"chained"`` or ``"direct"``; method: flow read-out (``"weighted_sum"``, ``"argmax"``,
    ``"weighted_argmax"`` with ``window`` in feature cells); upsample_factor: frames scaled by this
    before the model; processing_size: if set, the short side (px) of the frames the model sees,
    instead of ``upsample_factor`` (which then reads None); round_trip (direct mode only): also call a point occluded when
    the flow back to its query frame misses the query by this many px or more (None: only points
    outside the frame are occluded, the paper's rule; chained mode always checks each step's
    forward–backward consistency, at 3 px); chained_candidate (direct mode only): also move each
    point on from its previous frame and keep whichever candidate comes back closer to its query
    (about twice the pairs; :func:`gmrw.tracking.modes.direct_tracks_with_chained_candidate`);
    round_trip_correction (direct mode with ``round_trip``): move each match back by half of its
    round trip's miss where the round trip passes (:func:`gmrw.tracking.modes.corrected_by_round_trip`:
    free, the flows back are read anyway);
    fine_size (models with the fine-match step only): the short side (px) of the frames the step's
    maps are computed from, when it should differ from the global match's (e.g. the global match
    at a size the model was trained near, the step at the video's own; 0: the video's own size,
    its short side at most twice the global match's: :data:`FINE_OWN_SIZE_MAX_SCALE`; None: the
    global match's frames). The step's maps cost the backbone's first stage a frame, a
    fraction of the transformer's pairs.
    """

    mode: str = "chained"
    method: str = "weighted_sum"
    window: float | None = None
    upsample_factor: float | None = 1.0
    processing_size: int | None = None
    round_trip: float | None = None
    chained_candidate: bool = False
    fine_size: int | None = None
    round_trip_correction: bool = False

    def __post_init__(self) -> None:
        check_choice(self.mode, TRACKING_MODES, "tracking mode")
        check_flow_method(self.method, self.window)
        factor = self.upsample_factor
        if factor is not None and (
            isinstance(factor, bool)
            or not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0)
        ):
            raise ValueError(f"upsample_factor must be a positive number, got {factor!r}")
        size = self.processing_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < SIZE_MULTIPLE):
            raise ValueError(
                f"processing_size must be an integer of at least {SIZE_MULTIPLE} (pixels), got {size!r}"
            )
        # One size is in effect, and the other reads None: so these options, passed on as keyword
        # arguments (``**options.as_dict()``), resolve to themselves again.
        object.__setattr__(self, "upsample_factor", None if size is not None else (factor or 1.0))
        trip = self.round_trip
        if trip is not None and (
            isinstance(trip, bool)
            or not isinstance(trip, (int, float))
            or not math.isfinite(trip)
            or trip <= 0
        ):
            raise ValueError(f"round_trip must be a positive number of pixels or None, got {trip!r}")
        fine = self.fine_size
        if fine is not None and (
            isinstance(fine, bool) or not isinstance(fine, int) or (fine != 0 and fine < SIZE_MULTIPLE)
        ):
            raise ValueError(
                f"fine_size must be 0 (the video's own size) or an integer of at least {SIZE_MULTIPLE} "
                f"(pixels), got {fine!r}"
            )
        if not isinstance(self.round_trip_correction, bool):
            raise ValueError(
                f"round_trip_correction must be true or false, got {self.round_trip_correction!r}"
            )
        if self.round_trip_correction and trip is None:
            raise ValueError("round_trip_correction needs round_trip (the flows back to the query frame)")
        if not isinstance(self.chained_candidate, bool):
            raise ValueError(f"chained_candidate must be true or false, got {self.chained_candidate!r}")

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """(H', W') of the frames the model sees for a ``height × width`` video."""
        if self.processing_size is not None:
            return scaled_size(height, width, short_side=self.processing_size)
        return scaled_size(height, width, scale=self.upsample_factor)

    def fine_model_size(self, height: int, width: int) -> tuple[int, int] | None:
        """(H'', W'') of the frames the fine-match step's maps come from for a ``height × width``
        video, or None: from the global match's (:meth:`model_size`). ``fine_size=0``: the video's
        own size, its short side at most ``FINE_OWN_SIZE_MAX_SCALE`` times the global match's."""
        if self.fine_size is None:
            return None
        if self.fine_size == 0:
            cap = FINE_OWN_SIZE_MAX_SCALE * min(self.model_size(height, width))
            if min(height, width) > cap:
                return scaled_size(height, width, short_side=cap)
            return scaled_size(height, width, scale=1.0)
        return scaled_size(height, width, short_side=self.fine_size)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


LIBRARY_DEFAULTS = TrackingOptions()


def model_defaults(model: Any) -> dict[str, Any]:
    """The tracking options a model carries (``model.tracking_defaults``), checked; {} if none."""
    stored = getattr(model, "tracking_defaults", None) or {}
    if not isinstance(stored, Mapping):
        raise ValueError(f"model.tracking_defaults must be a mapping, got {type(stored).__name__}")
    unknown = set(stored) - set(LIBRARY_DEFAULTS.as_dict())
    if unknown:
        raise ValueError(f"model.tracking_defaults has unknown options {sorted(unknown)}")
    return {k: v for k, v in stored.items() if v is not None}


def resolve_options(model: Any = None, **given: Any) -> TrackingOptions:
    """Options for tracking with ``model``: each given (non-None) value, else the model's
    ``tracking_defaults``, else :data:`LIBRARY_DEFAULTS`.

    An explicit ``upsample_factor`` replaces a ``processing_size`` the model carries (and the
    reverse); giving both explicitly is an error. ``processing_size=0`` keeps the video's own size
    (the same as ``upsample_factor=1``).
    """
    unknown = set(given) - set(LIBRARY_DEFAULTS.as_dict())
    if unknown:
        raise TypeError(f"unknown tracking options {sorted(unknown)}")
    given = {k: v for k, v in given.items() if v is not None}
    if "upsample_factor" in given and "processing_size" in given:
        raise ValueError("give either upsample_factor or processing_size, not both")
    if given.get("processing_size") == 0 and not isinstance(given["processing_size"], bool):
        del given["processing_size"]
        given["upsample_factor"] = 1.0
    defaults = model_defaults(model)
    if "upsample_factor" in given:
        defaults.pop("processing_size", None)
    if "processing_size" in given:
        defaults.pop("upsample_factor", None)
    return replace(LIBRARY_DEFAULTS, **{**defaults, **given})
