"""Online tracking: frames arrive one at a time (a camera, a robot, a video too long to hold), points
can be added at any frame, and positions come back for every frame, in memory that does not grow
with the video.

    session = predictor.online()
    session.add_queries([[0, 120.0, 80.0]])        # (t, y, x) rows, or (y, x) rows at the current frame
    for frame in frames:                            # (H, W, 3) uint8, the video's own size
        positions, occluded = session.step(frame)   # (N, 2) (x, y) and (N,) bool, every query so far

Chained mode (the default) keeps the previous frame's encoding and the current positions; each
new frame is refined against the previous one, both flows of that pair are read at the points from
the one refinement, and every point moves by the forward flow at its position — the same step
(:func:`gmrw.tracking.modes.forward_step`) and the same frames, model input and coordinates as the
offline forward sweep, so a query's positions equal the offline chained track from its query frame
on.

**What ``occluded`` means online.** Chained: a point is occluded at frame k when it lies outside
the frame, or when the forward flow k-1 → k at its position and the backward flow k → k-1 where it
lands disagree by ``CONSISTENCY_THRESHOLD`` (3) px or more: the forward-backward check of the last
pair only. Offline chained tracking also checks the pair (k, k+1) and walks back from each query
frame (the backward sweep); online there is no next frame yet and no going back, so a point is
flagged one frame later than offline and only for the pair it has crossed, and positions before a
query's frame are not known (NaN). Direct mode keeps one encoding per distinct query frame, flows
each new frame straight from it, and calls a point occluded only when it is outside the frame, as
offline. A query is visible at its own frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gmrw.tracking import encodings
from gmrw.tracking.encodings import Encoding
from gmrw.tracking.flows import FlowModel, PairFlows
from gmrw.tracking.inputs import as_points, check_frame, check_queries
from gmrw.tracking.modes import CONSISTENCY_THRESHOLD, forward_step, inside
from gmrw.tracking.options import TrackingOptions


class OnlineSession:
    """Tracks a video given frame by frame; see the module docstring. Made by
    :meth:`gmrw.Predictor.online`.

    Args:
        model: a GMRW (anything with ``flow``), on the device to run on.
        options: how to track (``mode`` chained or direct, flow ``method``/``window``, the size the
            model sees), as :func:`gmrw.track`.
        compute_dtype: the encoder's and transformer's autocast dtype, None for float32
            (:func:`gmrw.tracking.precision.compute_dtype`).
    """

    def __init__(
        self, model: torch.nn.Module, options: TrackingOptions, compute_dtype: torch.dtype | None = None
    ):
        self.model = model
        self.options = options
        self.compute_dtype = compute_dtype
        #: Index of the latest frame given to :meth:`step` (-1 before the first).
        self.t = -1
        #: (H, W) of the video, known from its first frame.
        self.size: tuple[int, int] | None = None
        self._reader: FlowModel | None = None
        self._queries = torch.zeros(0, 3)  # (N, 3) (t, y, x)
        self._start = torch.zeros(0, 2)  # (N, 2) (x, y) at the query frame
        self._positions = torch.zeros(0, 2)  # (N, 2) (x, y) at frame t, NaN before the query frame
        self._visible = torch.zeros(0, dtype=torch.bool)  # (N,) at frame t
        self._previous: Encoding | None = None  # the latest frame, encoded
        self._anchors: dict[int, Encoding] = {}  # direct mode: query frame → its encoding

    @property
    def num_queries(self) -> int:
        return len(self._queries)

    def add_queries(self, points: Any) -> torch.Tensor:
        """Add query points: (M, 3) rows of (t, y, x), or (M, 2) rows of (y, x) at the current
        frame (the latest one given to :meth:`step`; frame 0 before the first), in the video's
        pixels. A query at a frame still to come waits for it; one at a past frame is an error
        (online tracking cannot go back). Returns the (M,) indices the new points have in
        :meth:`step`'s outputs."""
        rows = as_points(points)
        if rows.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        current = max(self.t, 0)
        if rows.ndim == 2 and rows.shape[-1] == 2:
            rows = torch.cat((torch.full((len(rows), 1), float(current)), rows), dim=-1)
        if rows.ndim != 2 or rows.shape[-1] != 3:
            raise ValueError(
                f"points must be (M, 3) rows of (t, y, x) or (M, 2) of (y, x), got {tuple(rows.shape)}"
            )
        for n, (t, y, x) in enumerate(rows.tolist()):
            label = f"query {self.num_queries + n} (t={t:g}, y={y:g}, x={x:g})"
            if not all(np.isfinite((t, y, x))):
                raise ValueError(f"{label}: not a finite number")
            if abs(t - round(t)) > 1e-4:
                raise ValueError(f"{label}: the frame index t must be an integer")
            if round(t) < current:
                raise ValueError(
                    f"{label}: frame {round(t)} has passed, the session is at frame {current}; "
                    "online tracking cannot go back"
                )
        rows[:, 0] = rows[:, 0].round()
        if self.size is not None:
            self._check_inside(rows)
        new = torch.arange(self.num_queries, self.num_queries + len(rows))
        self._queries = torch.cat((self._queries, rows))
        self._start = torch.cat((self._start, rows[:, [2, 1]]))
        nan = torch.full((len(rows), 2), float("nan"))
        self._positions = torch.cat((self._positions, nan))
        self._visible = torch.cat((self._visible, torch.zeros(len(rows), dtype=torch.bool)))
        at_current = rows[:, 0] == self.t
        if at_current.any():
            # The current frame is already tracked: these points start there and move from the next.
            self._start_points(new[at_current], self._previous)
        return new

    def step(self, frame: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Track the next frame, (H0, W0, 3) uint8 (or float in [0, 255]) at the video's size.

        Returns:
            positions (N, 2) (x, y) float32 in the video's pixels and occluded (N,) bool, for every
            query added so far in the order added; NaN and occluded for a query whose frame has
            not come yet.
        """
        image = check_frame(frame)
        if self.size is None:
            self._begin(tuple(image.shape[:2]))
        elif tuple(image.shape[:2]) != self.size:
            raise ValueError(
                f"frame {self.t + 1} is {image.shape[1]}x{image.shape[0]}, the session's video is "
                f"{self.size[1]}x{self.size[0]}"
            )
        k = self.t + 1
        with torch.no_grad():
            encoded = self._reader.encode(image[None])
            frames = self._queries[:, 0]
            if self.options.mode == "chained":
                self._chained_step(encoded, frames < k)
            else:
                self._direct_step(encoded, frames < k)
        self._previous = encoded
        self.t = k
        starting = torch.nonzero(frames == k).squeeze(1)
        if len(starting):
            self._start_points(starting, encoded)
        return self._positions.clone(), ~self._visible

    def memory_bytes(self) -> int:
        """Bytes of tensors the session holds: it grows with the queries (and, in direct mode, the
        distinct query frames), never with the number of frames."""
        held = [self._queries, self._start, self._positions, self._visible, *self._anchors.values()]
        if self._previous is not None:
            held.append(self._previous)
        return sum(encodings.nbytes(t) for t in held)

    # ----------------------------------------------------------------------------- internals
    def _begin(self, size: tuple[int, int]) -> None:
        """The first frame fixes the video's size; queries given before it are checked against it."""
        self._check_inside(self._queries, size)
        self.size = size
        options = self.options
        model_size = options.model_size(*size)
        self._reader = FlowModel(
            self.model,
            size,
            model_size,
            options.method,
            options.window,
            fine_size=options.fine_model_size(*size),
            compute_dtype=self.compute_dtype,
        )

    def _check_inside(self, rows: torch.Tensor, size: tuple[int, int] | None = None) -> None:
        height, width = size or self.size
        if len(rows):
            last = int(rows[:, 0].max()) + 1
            check_queries(rows[None], last, height, width, 1)

    def _start_points(self, index: torch.Tensor, encoded: Encoding) -> None:
        self._positions[index] = self._start[index]
        self._visible[index] = True
        if self.options.mode == "direct":
            self._anchors[int(self._queries[index[0], 0])] = encoded

    def _chained_step(self, encoded: Encoding, active: torch.Tensor) -> None:
        if not active.any():
            return
        # One pair, read forward (request 0) and backward (request 1) from the one refinement.
        flows: PairFlows = self._reader.pairs(self._previous, encoded, [0, 0], [False, True])
        moved, consistent = forward_step(
            self._positions[active][None],
            lambda xy: flows.at([0], xy),
            lambda xy: flows.at([1], xy),
            CONSISTENCY_THRESHOLD,
        )
        self._positions[active] = moved[0]
        self._visible[active] = inside(moved[0], *self.size) & consistent[0]

    def _direct_step(self, encoded: Encoding, active: torch.Tensor) -> None:
        anchors = sorted(f for f in self._anchors if (active & (self._queries[:, 0] == f)).any())
        if not anchors:
            return
        sources = encodings.cat([self._anchors[f] for f in anchors])
        targets = encodings.repeat_rows(encoded, len(anchors))
        flows = self._reader.pairs(sources, targets, list(range(len(anchors))), [False] * len(anchors))
        for k, f in enumerate(anchors):
            members = torch.nonzero(self._queries[:, 0] == f).squeeze(1)
            start = self._start[members][None]
            moved = (start + flows.at([k], start))[0]
            self._positions[members] = moved
            self._visible[members] = inside(moved, *self.size)
