"""Flows → tracks: the two TAP-Vid tracking modes of the paper, independent of where flows come from.

Both take a *pair-flow function* ``pair_flows(pairs) -> PairFlows`` (:mod:`gmrw.tracking.flows`):
for a list of ``(b, src, dst)`` triples (video ``b`` of the batch, frame ``src`` to frame ``dst``)
it returns flows that are read at points, ``flows.at(index, xy)``, in pixels of the video. The
model-backed one is :class:`~gmrw.tracking.flows.ModelFlows`; the tests pass the reference's stored
flows. Pairs are requested a chunk at a time and never all kept (except, in chained mode, the steps
both sweeps need, within ``cache_bytes``).

Shapes: queries (B, N, 3) as (t, y, x) pixels; tracks (B, N, T, 2) as (x, y) pixels;
visible (B, N, T) bool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch

from gmrw.tracking.flows import Pair, PairFlows

PairFlowFn = Callable[[Sequence[Pair]], PairFlows]
Reader = Callable[[torch.Tensor], torch.Tensor]

#: Forward-backward consistency threshold of chained mode, in pixels of the original video.
CONSISTENCY_THRESHOLD = 3.0


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def inside(xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(…, 2) positions → (…) bool: ``0 <= x < width`` and ``0 <= y < height``."""
    x, y = xy[..., 0], xy[..., 1]
    return (x >= 0) & (y >= 0) & (x < width) & (y < height)


def query_frames(queries: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) queries → (B, N) int64 frame indices (t is integer-valued; see ``check_queries``)."""
    return torch.round(queries[..., 0]).long()


def query_xy(queries: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) (t, y, x) → (B, N, 2) float32 (x, y). A new tensor: the caller's is never touched."""
    return torch.stack((queries[..., 2], queries[..., 1]), dim=-1).float()


def query_groups(frames: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
    """(B, N) query frames → ``{(b, s): indices of video b's queries on frame s}`` (int64)."""
    return {
        (i, s): torch.nonzero(row == s).squeeze(1)
        for i, row in enumerate(frames)
        for s in row.unique().tolist()
    }


def forward_step(
    positions: torch.Tensor,
    read_forward: Reader,
    read_backward: Reader,
    threshold: float = CONSISTENCY_THRESHOLD,
    restart: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of chained tracking over the frame pair (t, t+1), shared by the offline forward
    sweep and online tracking so that both compute the same positions.

    Args:
        positions: (B, N, 2) (x, y) pixels at frame t.
        read_forward / read_backward: the flows t → t+1 and t+1 → t, read at (B, N, 2) points.
        restart: optional (mask (B, N) bool, start (B, N, 2)): points placed at ``start`` at t+1
            (queries of frame t+1) instead of moved.

    Returns:
        positions at t+1 (B, N, 2), and consistent (B, N) bool: the forward flow at the point and
        the backward flow where it lands cancel to within ``threshold`` px.
    """
    delta = read_forward(positions)
    following = positions + delta
    if restart is not None:
        following = torch.where(restart[0].unsqueeze(-1), restart[1], following)
    back = read_backward(following)
    return following, torch.norm(delta + back, dim=-1) < threshold


class _Step(NamedTuple):
    """The flows of one chained step for every video: rows of ``flows`` forward and backward."""

    flows: PairFlows
    forward: list[int]
    backward: list[int]
    nbytes: int

    def read_forward(self, xy: torch.Tensor) -> torch.Tensor:
        return self.flows.at(self.forward, xy)

    def read_backward(self, xy: torch.Tensor) -> torch.Tensor:
        return self.flows.at(self.backward, xy)


def chained_tracks(
    queries: torch.Tensor,
    num_frames: int,
    size: tuple[int, int],
    pair_flows: PairFlowFn,
    steps_per_chunk: int = 1,
    cache_bytes: int | None = None,
    threshold: float = CONSISTENCY_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chained tracking (the paper's "forward_backward_query_point" setting).

    Step ``t`` is the frame pair (t, t+1), with forward flow ``F_t`` (t → t+1) and backward flow
    ``B_t`` (t+1 → t). A forward sweep starts each point at its query frame and adds ``F_t``
    read at the current position; a backward sweep walks points back from their query frame
    with ``B_t``. A point is visible at frame t if it is inside the image and the forward and
    backward flows of both adjacent pairs cancel to within ``threshold`` px
    (``|F_t(x_t) + B_t(x_{t+1})| < threshold``); it is always visible at its query frame.

    The forward sweep needs steps ``min(query frame)…T-2``, the backward sweep ``0…max(query
    frame)-1``. The steps both need are kept from the first sweep while they take at most
    ``cache_bytes`` (None: no limit; 0: keep none), so no pair is computed twice; beyond that,
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
    cache: dict[int, _Step] = {}
    budget = float("inf") if cache_bytes is None else cache_bytes

    def step_flows(steps: Sequence[int]) -> dict[int, _Step]:
        out = {t: cache[t] for t in steps if t in cache}
        todo = [t for t in steps if t not in cache]
        if todo:
            pairs = [(i, t, t + 1) for t in todo for i in range(b)]
            pairs += [(i, t + 1, t) for t in todo for i in range(b)]
            flows = pair_flows(pairs)
            half = len(pairs) // 2
            share = flows.nbytes // len(todo)
            for k, t in enumerate(todo):
                forward = list(range(k * b, (k + 1) * b))
                out[t] = _Step(flows, forward, [half + r for r in forward], share)
        return out

    # Forward sweep: positions at frames >= the query frame.
    current = torch.zeros(b, n, 2, device=device)
    forward_steps = list(range(first_query, num_frames - 1))
    for chunk in _chunks(forward_steps, steps_per_chunk):
        flows = step_flows(chunk)
        for t in chunk:
            step = flows[t]
            current = torch.where((frames == t).unsqueeze(-1), start, current)
            tracks[:, :, t] = current
            following, check = forward_step(
                current, step.read_forward, step.read_backward, threshold, (frames == t + 1, start)
            )
            consistent[:, :, t] = torch.where(frames <= t, check, consistent[:, :, t])
            current = following
            if t < last_query and step.nbytes <= budget:
                cache[t] = step
                budget -= step.nbytes
    # The last frame (and, if every query is there, every earlier one is set below).
    tracks[:, :, num_frames - 1] = torch.where(
        (frames == num_frames - 1).unsqueeze(-1), start, current if forward_steps else start
    )

    # Backward sweep: positions at frames before the query frame.
    backward_steps = list(range(last_query - 1, -1, -1))
    for chunk in _chunks(backward_steps, steps_per_chunk):
        flows = step_flows(chunk)
        for t in chunk:
            step = flows[t]
            cache.pop(t, None)
            successor = tracks[:, :, t + 1]
            delta = step.read_backward(successor)
            before = t < frames
            position = torch.where(before.unsqueeze(-1), successor + delta, tracks[:, :, t])
            tracks[:, :, t] = position
            check = torch.norm(step.read_forward(position) + delta, dim=-1) < threshold
            consistent[:, :, t] = torch.where(before, check, consistent[:, :, t])

    ones = torch.ones(b, n, 1, dtype=torch.bool, device=device)
    visible = inside(tracks, height, width)
    visible &= torch.cat((consistent, ones), dim=-1)  # pair (t, t+1) as seen from t
    visible &= torch.cat((ones, consistent), dim=-1)  # pair (t-1, t) as seen from t
    at_query = torch.arange(num_frames, device=device) == frames.unsqueeze(-1)
    visible |= at_query
    return tracks, visible


def direct_pairs(frames: torch.Tensor, num_frames: int) -> list[Pair]:
    """The frame pairs direct mode needs for query frames ``frames`` (B, N): ``(b, s, t)`` with
    ``s`` a query frame of video ``b`` and ``t`` any other frame, each unordered pair once (where
    both are query frames, the pair serves both: it is listed with the later frame as ``s``),
    ordered by ``t`` so that each frame's encoding is made once."""
    jobs = []
    for i, row in enumerate(frames):
        anchors = sorted(set(row.tolist()))
        for t in range(num_frames):
            jobs += [(i, s, t) for s in anchors if s != t and not (t > s and t in anchors)]
    return jobs


def direct_tracks(
    queries: torch.Tensor,
    num_frames: int,
    size: tuple[int, int],
    pair_flows: PairFlowFn,
    pairs_per_chunk: int = 1,
    round_trip: float | None = None,
    chained_candidate: bool = False,
    round_trip_correction: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct tracking (the paper's "forward_backward_time_independent_query_point" setting).

    For each distinct query frame ``s`` of each video, the flow ``s → t`` to every other frame
    ``t`` is read at the queries of frame ``s``; the track at ``s`` is the query itself (so
    the pair ``s → s`` is never computed). Visible means inside the image (the paper's rule) and,
    with ``round_trip`` (px), also that the flow ``t → s`` read at the tracked position brings the
    point back to within ``round_trip`` px of its query: a point that cannot be matched back is
    taken as occluded. Pairs come ``pairs_per_chunk`` unordered pairs at a time
    (:func:`direct_pairs`); the reverse flows come from the same pairs. ``chained_candidate``:
    see :func:`direct_tracks_with_chained_candidate`. ``round_trip_correction`` (with
    ``round_trip``): :func:`corrected_by_round_trip`.
    """
    if round_trip_correction and round_trip is None:
        raise ValueError("round_trip_correction needs round_trip (the flows back to the query frame)")
    if chained_candidate:
        return direct_tracks_with_chained_candidate(
            queries, num_frames, size, pair_flows, round_trip, pairs_per_chunk, round_trip_correction
        )
    b, n, _ = queries.shape
    height, width = size
    device = queries.device
    frames = query_frames(queries)
    start = query_xy(queries)
    tracks = start.unsqueeze(2).repeat(1, 1, num_frames, 1)
    consistent = torch.ones(b, n, num_frames, dtype=torch.bool, device=device)
    members = query_groups(frames)
    for chunk in _chunks(direct_pairs(frames, num_frames), pairs_per_chunk):
        # Directed reads: each query frame's points towards the other frame (and back).
        reads = [(i, s, t) for i, a, c in chunk for s, t in ((a, c), (c, a)) if (i, s) in members]
        wanted = reads + ([(i, t, s) for i, s, t in reads] if round_trip is not None else [])
        slot = {pair: k for k, pair in enumerate(dict.fromkeys(wanted))}
        flows = pair_flows(list(slot))
        for i, s, t in reads:
            index = members[(i, s)]
            points = start[i, index].unsqueeze(0)
            moved = points + flows.at([slot[(i, s, t)]], points)
            tracks[i, index, t] = moved[0]
            if round_trip is not None:
                miss = _round_trip(flows, slot[(i, t, s)], moved, points)
                consistent[i, index, t] = torch.norm(miss, dim=-1) < round_trip
                if round_trip_correction:
                    tracks[i, index, t] = corrected_by_round_trip(moved[0], miss, round_trip)
    return tracks, inside(tracks, height, width) & consistent


def count_pairs(mode: str, queries: torch.Tensor, num_frames: int, chained_candidate: bool = False) -> int:
    """Frame pairs a model refines to track ``queries`` (B, N, 3) in ``mode`` (every chained step
    once; direct mode's :func:`direct_pairs`, or with ``chained_candidate`` the pairs of each
    :func:`candidate_steps` step): for progress bars and tests."""
    if mode == "chained":
        return queries.shape[0] * (num_frames - 1) if queries.shape[1] else 0
    frames = query_frames(queries)
    if chained_candidate:
        return sum(len(_unordered(_step_requests(step))) for step in candidate_steps(frames, num_frames))
    return len(direct_pairs(frames, num_frames))


#: With ``chained_candidate``, a point whose two candidates lie within this fraction of
#: ``round_trip`` of each other is visible even if neither comes back to its query: two
#: independent routes to the same place are evidence enough (an occluded point's rarely agree).
AGREEMENT_FRACTION = 0.25


class Walk(NamedTuple):
    """One step of the points of query frame ``s`` of video ``b``: from frame ``t - direction``
    to frame ``t`` (``first``: the step next to the query frame, where both routes coincide)."""

    b: int
    s: int
    t: int
    direction: int
    first: bool


def candidate_steps(frames: torch.Tensor, num_frames: int) -> list[list[Walk]]:
    """For query frames ``frames`` (B, N): step k (k = 1 … T-1) walks every query frame ``s`` of
    every video to ``s + k`` and ``s - k`` (those inside the video), so that each step's
    previous positions are known (a step's walks are independent of each other)."""
    walks = [(b, s) for b, row in enumerate(frames) for s in sorted(set(row.tolist()))]
    steps = []
    for k in range(1, num_frames):
        step = [
            Walk(b, s, s + d * k, d, k == 1) for b, s in walks for d in (1, -1) if 0 <= s + d * k < num_frames
        ]
        if step:
            steps.append(step)
    return steps


def _step_requests(step: Sequence[Walk]) -> list[Pair]:
    """The directed pairs a step reads: query frame → t and back, and (after the first step) the
    previous frame → t."""
    requests: list[Pair] = []
    for w in step:
        requests += [(w.b, w.s, w.t), (w.b, w.t, w.s)]
        if not w.first:
            requests.append((w.b, w.t - w.direction, w.t))
    return requests


def _unordered(pairs: Iterable[Pair]) -> set[tuple[int, int, int]]:
    return {(b, min(s, t), max(s, t)) for b, s, t in pairs}


def _step_chunks(step: Sequence[Walk], pairs_per_chunk: int | None) -> list[list[Walk]]:
    """A step's walks in chunks that read at most ``pairs_per_chunk`` unordered pairs each;
    ``None``: the whole step. Walks that read a common pair (two query frames' walks towards each
    other) stay in one chunk, which may then read more, so that no pair is refined twice. The
    walks of a step are independent (each reads only the step before): chunking changes what is
    held at once, not the tracks."""
    if pairs_per_chunk is None:
        return [list(step)]
    groups: list[tuple[list[Walk], set]] = []
    for walk in step:
        pairs = _unordered(_step_requests([walk]))
        joined = [g for g in groups if g[1] & pairs]
        groups = [g for g in groups if not g[1] & pairs]
        groups.append(([w for g in joined for w in g[0]] + [walk], pairs.union(*(g[1] for g in joined))))
    chunks: list[list[Walk]] = []
    current: list[Walk] = []
    held: set = set()
    for walks, pairs in groups:
        if current and len(held | pairs) > pairs_per_chunk:
            chunks.append(current)
            current, held = [], set()
        current += walks
        held |= pairs
    return [*chunks, current] if current else chunks


def _round_trip(flows: PairFlows, back: int, xy: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Where pair ``back``'s flow takes positions ``xy`` (1, M, 2), less ``points`` (1, M, 2): the
    round trip's miss (M, 2) (x, y)."""
    return (xy + flows.at([back], xy) - points)[0]


def corrected_by_round_trip(matches: torch.Tensor, miss: torch.Tensor, round_trip: float) -> torch.Tensor:
    """Matches (M, 2) moved back by half their round trip's miss (M, 2), where the round trip
    passes (the miss is under ``round_trip`` px).

    The flow there and the flow back each err; if their errors are alike in size and independent,
    the miss is their sum and moving the match by half of it (the local motion taken as a
    translation) leaves half of each, which halves the error's variance. Only where the round trip
    passes: a match that does not come back is wrong, not noisy. (Chosen on the photo benchmark's
    tuning draw over correcting misses under a quarter, a half or three quarters of ``round_trip``
    only: docs/precision.md, "The round-trip correction".)
    """
    small = torch.norm(miss, dim=-1) < round_trip
    return torch.where(small.unsqueeze(-1), matches - 0.5 * miss, matches)


def direct_tracks_with_chained_candidate(
    queries: torch.Tensor,
    num_frames: int,
    size: tuple[int, int],
    pair_flows: PairFlowFn,
    round_trip: float | None = None,
    pairs_per_chunk: int | None = None,
    round_trip_correction: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct tracking with a second candidate per frame, chained from the point's previous frame.

    Walking out from each query frame ``s`` one frame at a time, a point has two candidates at
    frame ``t``: the direct match ``s → t`` of its query, and its position at the previous frame
    ``t ∓ 1`` moved by the flow ``t ∓ 1 → t`` (a short hop, where the direct match may have jumped
    to a look-alike far away). The one whose flow ``t → s`` brings it back closer to the query is
    kept. With ``round_trip`` (px), a point is visible where that round trip misses the query by
    less than ``round_trip``, or where the two candidates agree within
    ``AGREEMENT_FRACTION × round_trip``; without it, where it is inside the frame (as
    :func:`direct_tracks`). Costs about twice direct mode's pairs (:func:`count_pairs`). A step's
    pairs go to ``pair_flows`` in calls of at most ``pairs_per_chunk`` unordered pairs
    (:func:`_step_chunks`; ``None``: one call a step), which bounds the refined features held at once.
    ``round_trip_correction``: the kept candidate is returned :func:`corrected_by_round_trip` (the
    walks go on from the uncorrected one).

    Shapes as :func:`direct_tracks`: queries (B, N, 3) (t, y, x); tracks (B, N, T, 2) (x, y) and
    visible (B, N, T), in the pixels of the video the flows are read in.
    """
    if round_trip_correction and round_trip is None:
        raise ValueError("round_trip_correction needs round_trip (the flows back to the query frame)")
    b, n, _ = queries.shape
    frames = query_frames(queries)
    start = query_xy(queries)
    tracks = start.unsqueeze(2).repeat(1, 1, num_frames, 1)
    corrected = tracks.clone() if round_trip_correction else tracks
    confirmed = torch.ones(b, n, num_frames, dtype=torch.bool, device=queries.device)
    members = query_groups(frames)
    chunks = (
        chunk for step in candidate_steps(frames, num_frames) for chunk in _step_chunks(step, pairs_per_chunk)
    )
    for chunk in chunks:
        slot = {pair: k for k, pair in enumerate(dict.fromkeys(_step_requests(chunk)))}
        flows = pair_flows(list(slot))

        for w in chunk:
            index = members[(w.b, w.s)]
            points = start[w.b, index].unsqueeze(0)
            best = points + flows.at([slot[(w.b, w.s, w.t)]], points)
            back = slot[(w.b, w.t, w.s)]
            best_trip = _round_trip(flows, back, best, points)
            best_miss = torch.norm(best_trip, dim=-1)
            agree = torch.zeros_like(best_miss, dtype=torch.bool)
            if not w.first:
                before = tracks[w.b, index, w.t - w.direction].unsqueeze(0)
                chained = before + flows.at([slot[(w.b, w.t - w.direction, w.t)]], before)
                chained_trip = _round_trip(flows, back, chained, points)
                chained_miss = torch.norm(chained_trip, dim=-1)
                if round_trip is not None:
                    agree = torch.norm(chained - best, dim=-1)[0] < AGREEMENT_FRACTION * round_trip
                closer = chained_miss < best_miss
                best = torch.where(closer[None, :, None], chained, best)
                best_trip = torch.where(closer[:, None], chained_trip, best_trip)
                best_miss = torch.where(closer, chained_miss, best_miss)
            tracks[w.b, index, w.t] = best[0]
            if round_trip_correction:
                corrected[w.b, index, w.t] = corrected_by_round_trip(best[0], best_trip, round_trip)
            if round_trip is not None:
                confirmed[w.b, index, w.t] = (best_miss < round_trip) | agree
    height, width = size
    return corrected, inside(corrected, height, width) & confirmed
