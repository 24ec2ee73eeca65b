"""Flows → tracks: the two TAP-Vid tracking modes of the paper, independent of where flows come from.

Both functions take a *pair-flow function* ``pair_flows(pairs) -> (K, 2, H, W)``: for a list of
``(b, src, dst)`` triples (video ``b`` of the batch, frame ``src`` to frame ``dst``) it returns
the flows (dx, dy) in pixels of the original video size. The model-backed one lives in
:mod:`gmrw.tracking.api`; tests pass the reference's stored flows instead. Flows are requested a
chunk at a time and never all kept (except, in chained mode, the ones both sweeps need; see
``cache_flows``).

Shapes: queries (B, N, 3) as (t, y, x) pixels; tracks (B, N, T, 2) as (x, y) pixels;
visible (B, N, T) bool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from gmrw.tracking.flow_sampling import inside, sample_flow

Pair = tuple[int, int, int]
PairFlowFn = Callable[[Sequence[Pair]], torch.Tensor]

#: Forward-backward consistency threshold of chained mode, in pixels of the original video.
CONSISTENCY_THRESHOLD = 3.0


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def query_frames(queries: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) queries → (B, N) int64 frame indices (t is integer-valued; see ``check_queries``)."""
    return torch.round(queries[..., 0]).long()


def query_xy(queries: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) (t, y, x) → (B, N, 2) float32 (x, y). A new tensor: the caller's is never touched."""
    return torch.stack((queries[..., 2], queries[..., 1]), dim=-1).float()


def forward_step(
    positions: torch.Tensor,
    flow_forward: torch.Tensor,
    flow_backward: torch.Tensor,
    threshold: float = CONSISTENCY_THRESHOLD,
    restart: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of chained tracking over the frame pair (t, t+1), shared by the offline forward
    sweep and online tracking so that both compute the same positions.

    Args:
        positions: (B, N, 2) (x, y) pixels at frame t.
        flow_forward / flow_backward: (B, 2, H, W) flows t → t+1 and t+1 → t.
        restart: optional (mask (B, N) bool, start (B, N, 2)): points placed at ``start`` at t+1
            (queries of frame t+1) instead of moved.

    Returns:
        positions at t+1 (B, N, 2), and consistent (B, N) bool: the forward flow at the point and
        the backward flow where it lands cancel to within ``threshold`` px.
    """
    delta = sample_flow(flow_forward, positions)
    following = positions + delta
    if restart is not None:
        following = torch.where(restart[0].unsqueeze(-1), restart[1], following)
    back = sample_flow(flow_backward, following)
    return following, torch.norm(delta + back, dim=-1) < threshold


def chained_tracks(
    queries: torch.Tensor,
    num_frames: int,
    size: tuple[int, int],
    pair_flows: PairFlowFn,
    steps_per_chunk: int = 1,
    cache_flows: bool = True,
    threshold: float = CONSISTENCY_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chained tracking (the paper's "forward_backward_query_point" setting).

    Step ``t`` is the frame pair (t, t+1), with forward flow ``F_t`` (t → t+1) and backward flow
    ``B_t`` (t+1 → t). A forward sweep starts each point at its query frame and adds ``F_t``
    sampled at the current position; a backward sweep walks points back from their query frame
    with ``B_t``. A point is visible at frame t if it is inside the image and the forward and
    backward flows of both adjacent pairs cancel to within ``threshold`` px
    (``|F_t(x_t) + B_t(x_{t+1})| < threshold``); it is always visible at its query frame.

    Each step's flows are requested once per sweep that needs them: the forward sweep needs steps
    ``min(query frame)…T-2``, the backward sweep ``0…max(query frame)-1``. With ``cache_flows``
    the steps both need are kept from the first sweep, so no pair is computed twice; without it,
    memory stays bounded by one chunk of ``steps_per_chunk`` steps and those steps are recomputed.
    """
    b, n, _ = queries.shape
    height, width = size
    device = queries.device
    frames = query_frames(queries)
    start = query_xy(queries)
    tracks = torch.zeros(b, n, num_frames, 2, device=device)
    # consistent[..., t]: the flows of step t cancel at this point's positions at t and t+1.
    consistent = torch.ones(b, n, max(num_frames - 1, 0), dtype=torch.bool, device=device)
    if n == 0:
        return tracks, torch.zeros(b, n, num_frames, dtype=torch.bool, device=device)

    first_query, last_query = int(frames.min()), int(frames.max())
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def step_flows(steps: Sequence[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        out = {t: cache[t] for t in steps if t in cache}
        todo = [t for t in steps if t not in cache]
        if todo:
            pairs = [(i, t, t + 1) for t in todo for i in range(b)]
            pairs += [(i, t + 1, t) for t in todo for i in range(b)]
            flows = pair_flows(pairs).to(device=device, dtype=torch.float32)
            forward, backward = flows[: len(pairs) // 2], flows[len(pairs) // 2 :]
            for k, t in enumerate(todo):
                out[t] = (forward[k * b : (k + 1) * b], backward[k * b : (k + 1) * b])
        return out

    # Forward sweep: positions at frames >= the query frame.
    current = torch.zeros(b, n, 2, device=device)
    forward_steps = list(range(first_query, num_frames - 1))
    for chunk in _chunks(forward_steps, steps_per_chunk):
        flows = step_flows(chunk)
        for t in chunk:
            flow_f, flow_b = flows[t]
            current = torch.where((frames == t).unsqueeze(-1), start, current)
            tracks[:, :, t] = current
            following, check = forward_step(current, flow_f, flow_b, threshold, (frames == t + 1, start))
            consistent[:, :, t] = torch.where(frames <= t, check, consistent[:, :, t])
            current = following
            if cache_flows and t < last_query:
                cache[t] = flows[t]
    # The last frame (and, if every query is there, every earlier one is set below).
    tracks[:, :, num_frames - 1] = torch.where(
        (frames == num_frames - 1).unsqueeze(-1), start, current if forward_steps else start
    )

    # Backward sweep: positions at frames before the query frame.
    backward_steps = list(range(last_query - 1, -1, -1))
    for chunk in _chunks(backward_steps, steps_per_chunk):
        flows = step_flows(chunk)
        for t in chunk:
            flow_f, flow_b = flows[t]
            cache.pop(t, None)
            successor = tracks[:, :, t + 1]
            delta = sample_flow(flow_b, successor)
            before = t < frames
            position = torch.where(before.unsqueeze(-1), successor + delta, tracks[:, :, t])
            tracks[:, :, t] = position
            check = torch.norm(sample_flow(flow_f, position) + delta, dim=-1) < threshold
            consistent[:, :, t] = torch.where(before, check, consistent[:, :, t])

    ones = torch.ones(b, n, 1, dtype=torch.bool, device=device)
    visible = inside(tracks, height, width)
    visible &= torch.cat((consistent, ones), dim=-1)  # pair (t, t+1) as seen from t
    visible &= torch.cat((ones, consistent), dim=-1)  # pair (t-1, t) as seen from t
    at_query = torch.arange(num_frames, device=device) == frames.unsqueeze(-1)
    visible |= at_query
    return tracks, visible


def direct_tracks(
    queries: torch.Tensor,
    num_frames: int,
    size: tuple[int, int],
    pair_flows: PairFlowFn,
    pairs_per_chunk: int = 1,
    round_trip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct tracking (the paper's "forward_backward_time_independent_query_point" setting).

    For each distinct query frame ``s`` of each video, the flow ``s → t`` to every other frame
    ``t`` is sampled at the queries of frame ``s``; the track at ``s`` is the query itself (so
    the pair ``s → s`` is never computed). Visible means inside the image (the paper's rule) and,
    with ``round_trip`` (px), also that the flow ``t → s`` read at the tracked position brings the
    point back to within ``round_trip`` px of its query: a point that cannot be matched back is
    taken as occluded. The reverse flows come from the same pair computations (see
    :class:`gmrw.tracking.ModelPairFlows`), so the check costs only their read-out.
    """
    b, n, _ = queries.shape
    height, width = size
    device = queries.device
    frames = query_frames(queries)
    start = query_xy(queries)
    tracks = start.unsqueeze(2).repeat(1, 1, num_frames, 1)
    consistent = torch.ones(b, n, num_frames, dtype=torch.bool, device=device)
    jobs: list[Pair] = []
    members: dict[tuple[int, int], torch.Tensor] = {}
    for i in range(b):
        for s in torch.unique(frames[i]).tolist():
            members[(i, s)] = torch.nonzero(frames[i] == s).squeeze(1)
            jobs += [(i, s, t) for t in range(num_frames) if t != s]
    for chunk in _chunks(jobs, pairs_per_chunk):
        pairs = list(chunk) + ([(i, t, s) for i, s, t in chunk] if round_trip is not None else [])
        flows = pair_flows(pairs).to(device=device, dtype=torch.float32)
        for k, (i, s, t) in enumerate(chunk):
            index = members[(i, s)]
            points = start[i, index].unsqueeze(0)
            moved = points + sample_flow(flows[k : k + 1], points)
            tracks[i, index, t] = moved[0]
            if round_trip is not None:
                back = moved + sample_flow(flows[len(chunk) + k : len(chunk) + k + 1], moved)
                consistent[i, index, t] = torch.norm(back - points, dim=-1)[0] < round_trip
    return tracks, inside(tracks, height, width) & consistent
