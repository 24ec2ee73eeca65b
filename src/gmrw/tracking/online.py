"""Online tracking: frames arrive one at a time (a camera, a robot, a video too long to hold), points
can be added at any frame, and positions come back for every frame, in memory that does not grow
with the video.

    session = predictor.online()
    session.add_queries([[0, 120.0, 80.0]])        # (t, y, x) rows, or (y, x) rows at the current frame
    for frame in frames:                            # (H, W, 3) uint8, the video's own size
        positions, occluded = session.step(frame)   # (N, 2) (x, y) and (N,) bool, every query so far

Chained mode (the default) keeps the previous frame's encoding and the current positions; each
new frame is refined against the previous one, both flows of that pair are read from the one
refinement, and every point moves by the forward flow at its position — the same step
(:func:`gmrw.tracking.core.forward_step`) as the offline forward sweep, so a query's positions
equal the offline chained track from its query frame on.

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

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gmrw.tracking.api import check_queries
from gmrw.tracking.coords import positions_to_video, queries_to_frames
from gmrw.tracking.core import CONSISTENCY_THRESHOLD, forward_step
from gmrw.tracking.flow_sampling import inside, sample_flow
from gmrw.tracking.flows import FlowReader
from gmrw.tracking.inputs import as_points, check_frame
from gmrw.tracking.options import TrackingOptions
from gmrw.video import resize_frames


class OnlineSession:
    """Tracks a video given frame by frame; see the module docstring. Made by
    :meth:`gmrw.Predictor.online`.

    Args:
        model: a GMRW (anything with ``flow``), on the device to run on.
        options: how to track (``mode`` chained or direct, flow ``method``/``window``,
            ``upsample_factor`` on top of ``frame_size``).
        frame_size: (H0, W0) of the video → (H, W) its frames are resized to before the model.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        options: TrackingOptions,
        frame_size: Callable[[int, int], tuple[int, int]],
    ):
        self.model = model
        self.options = options
        self.frame_size = frame_size
        #: Index of the latest frame given to :meth:`step` (-1 before the first).
        self.t = -1
        self.original_size: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None
        self._reader: FlowReader | None = None
        self._queries = torch.zeros(0, 3)  # (N, 3) (t, y, x), original pixels
        self._start = torch.zeros(0, 2)  # (N, 2) (x, y) at the query frame, pixels of `size`
        self._positions = torch.zeros(0, 2)  # (N, 2) (x, y) at frame t, NaN before the query frame
        self._visible = torch.zeros(0, dtype=torch.bool)  # (N,) at frame t
        self._previous: torch.Tensor | None = None  # the latest frame, encoded
        self._anchors: dict[int, torch.Tensor] = {}  # direct mode: query frame → its encoding

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
        nan = torch.full((len(rows), 2), float("nan"))
        self._start = torch.cat((self._start, self._frame_points(rows) if self.size else nan))
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
        if self.original_size is None:
            self._begin(tuple(image.shape[:2]))
        elif tuple(image.shape[:2]) != self.original_size:
            raise ValueError(
                f"frame {self.t + 1} is {image.shape[1]}x{image.shape[0]}, the session's video is "
                f"{self.original_size[1]}x{self.original_size[0]}"
            )
        k = self.t + 1
        with torch.no_grad():
            encoded = self._reader.encode(resize_frames(image[None], self.size))
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
        return positions_to_video(self._positions, self.original_size, self.size), ~self._visible

    def memory_bytes(self) -> int:
        """Bytes of tensors the session holds: it grows with the queries (and, in direct mode, the
        distinct query frames), never with the number of frames."""
        held = [self._queries, self._start, self._positions, self._visible, *self._anchors.values()]
        if self._previous is not None:
            held.append(self._previous)
        return sum(t.numel() * t.element_size() for t in held)

    # ----------------------------------------------------------------------------- internals
    def _begin(self, original: tuple[int, int]) -> None:
        """The first frame fixes the video's size; queries given before it are checked against it."""
        size = tuple(self.frame_size(*original))
        self._check_inside(self._queries, original)
        self.original_size, self.size = original, size
        model_size = self.options.model_size(*size)
        self._reader = FlowReader(self.model, size, model_size, self.options.method, self.options.window)
        self._start = self._frame_points(self._queries)

    def _check_inside(self, rows: torch.Tensor, original: tuple[int, int] | None = None) -> None:
        height, width = original or self.original_size
        if len(rows):
            last = int(rows[:, 0].max()) + 1
            check_queries(rows[None], last, height, width, 1)

    def _frame_points(self, rows: torch.Tensor) -> torch.Tensor:
        """(M, 3) (t, y, x) original pixels → (M, 2) (x, y) pixels of the resized frames."""
        inside_points = queries_to_frames(rows, self.original_size, self.size)
        return inside_points[:, [2, 1]].contiguous()

    def _start_points(self, index: torch.Tensor, encoded: torch.Tensor) -> None:
        self._positions[index] = self._start[index]
        self._visible[index] = True
        if self.options.mode == "direct":
            self._anchors[int(self._queries[index[0], 0])] = encoded

    def _chained_step(self, encoded: torch.Tensor, active: torch.Tensor) -> None:
        if not active.any():
            return
        forward, backward = self._reader.both_ways(self._previous, encoded)
        device = forward.device
        moved, consistent = forward_step(
            self._positions[active][None].to(device), forward, backward, CONSISTENCY_THRESHOLD
        )
        moved, consistent = moved[0].cpu(), consistent[0].cpu()
        self._positions[active] = moved
        self._visible[active] = inside(moved, *self.size) & consistent

    def _direct_step(self, encoded: torch.Tensor, active: torch.Tensor) -> None:
        anchors = sorted(f for f in self._anchors if (active & (self._queries[:, 0] == f)).any())
        if not anchors:
            return
        sources = torch.cat([self._anchors[f] for f in anchors])
        flows = self._reader.one_way(sources, encoded.repeat(len(anchors), 1, 1, 1))
        for flow, f in zip(flows, anchors):
            members = torch.nonzero(self._queries[:, 0] == f).squeeze(1)
            start = self._start[members][None].to(flow.device)
            moved = (start + sample_flow(flow[None], start))[0].cpu()
            self._positions[members] = moved
            self._visible[members] = inside(moved, *self.size)
