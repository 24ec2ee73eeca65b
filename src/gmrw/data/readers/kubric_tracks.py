"""TAP-Vid-Kubric: point tracks sampled from a MOVi-E video's geometry, as Kubric's reader does.

This is a numpy re-implementation of the algorithm of Kubric's point-tracking reader
(``challenges/point_tracking/dataset.py``: ``add_tracks`` → ``track_points``) as tapnet uses it
for evaluation (``create_kubric_eval_dataset``: no random crop, 256 tracks, the whole frame):

1. Candidate query pixels lie on a (t, y, x) grid of stride 4 whose offset in each axis is random.
2. Tracks are shared out between segments (background and every object): segments are visited
   from the fewest grid pixels to the most, each asking for an equal share of what is still
   needed, capped at 10% of its grid pixels (:func:`allocate_tracks`). Query pixels are drawn
   uniformly with replacement within each segment.
3. A query pixel becomes a 3-D point: background pixels are unprojected with the depth map (the
   background is static); object pixels are read from ``object_coordinates`` (the point's place in
   the object's box), which the object's ``bboxes_3d`` carry to world space at every frame.
4. Every point is projected with the camera of every frame. It is occluded when behind the
   camera, outside the image, when the depth map around its projection (the largest of the 4
   neighbouring pixels) is nearer than 0.99 × its distance, when none of those 4 pixels belongs to
   its segment, or when (objects only, trusted normals only) its surface faces away from the camera
   while it did not at the query frame.
5. Queries are the grid pixels' centres ``(t, y + 0.5, x + 0.5)``; tracks are the projections in
   raster pixels ``(x, y)``. If fewer tracks than asked came out, the second-to-last one is repeated
   (what Kubric's ``_pad_with_last_row`` does).

What differs from Kubric's TensorFlow code is listed in :data:`DIFFERENCES`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The example features the sampler reads.
TRACK_FEATURES = (
    "video",
    "object_coordinates",
    "depth",
    "segmentations",
    "normal",
    "instances",
    "camera",
    "metadata",
)

#: Where this implementation knowingly differs from Kubric's (for the record; see docs/datasets.md).
DIFFERENCES = (
    "random numbers come from numpy (seeded per video), not TensorFlow's generator: the same "
    "distribution of grid offsets and query pixels, not the same draws (so not the reference's "
    "validation_data.tsv points);",
    "geometry is computed in float64 (Kubric: float32), so an occlusion test that sits exactly on "
    "its 0.99 depth threshold may come out the other way;",
    "a projection at infinity (a point on the camera plane) is marked occluded instead of producing "
    "NaN coordinates;",
    "a video with more than max_seg_id segments raises (Kubric's graph fails on it too, less clearly);",
    "with fewer than two sampled tracks the padding repeats the last one (Kubric's padding needs two);",
    "at a resolution other than the video's, coordinates are scaled with the resized video (Kubric's "
    "add_tracks resizes the video to train_size but keeps coordinates in input pixels; both are 256 in "
    "tapnet's evaluation, where nothing changes);",
    "no random crop and no vertical flip (tapnet's evaluation uses neither; its 'vflip' mode is not offered).",
)


# ------------------------------------------------------------------------------ camera


def quaternion_to_matrix(quaternions: np.ndarray) -> np.ndarray:
    """(…, 4) Kubric quaternions (w, x, y, z) → (…, 3, 3) rotations (not renormalised, as Kubric)."""
    q = np.asarray(quaternions, np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def camera_matrices(
    focal_length: float,
    sensor_width: float,
    positions: np.ndarray,
    quaternions: np.ndarray,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Kubric's camera → ``intrinsics`` (T, 3, 3) mapping camera coordinates to homogeneous
    normalised image coordinates ([0, 1], y down) and ``matrix_world`` (T, 4, 4) camera → world.

    The vertical focal length is scaled by H / W, as Kubric does (MOVi-E frames are square).
    """
    h, w = size
    fx = float(focal_length) / float(sensor_width)
    fy = fx * h / w
    intrinsics = np.array([[fx, 0.0, -0.5], [0.0, -fy, -0.5], [0.0, 0.0, -1.0]])
    num_frames = len(positions)
    matrix_world = np.zeros((num_frames, 4, 4))
    matrix_world[:, :3, :3] = quaternion_to_matrix(quaternions)
    matrix_world[:, :3, 3] = positions
    matrix_world[:, 3, 3] = 1.0
    return np.broadcast_to(intrinsics, (num_frames, 3, 3)), matrix_world


def project(
    points: np.ndarray, intrinsics: np.ndarray, matrix_world: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """World points (T, N, 3) → normalised image coordinates (T, N, 2) in [0, 1] (x, y) and
    whether each point is in front of the camera (T, N)."""
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)
    camera = np.einsum("tij,tnj->tni", np.linalg.inv(matrix_world), homogeneous)[..., :3]
    image = np.einsum("tij,tnj->tni", intrinsics, camera)
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = image[..., :2] / image[..., 2:3]
    return xy, image[..., 2] >= 0


def unproject(
    yx: np.ndarray, intrinsics: np.ndarray, matrix_world: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """Pixels ``yx`` (N, 2) int of one frame, with that frame's camera and depth map (H, W)
    (distance to the camera centre) → world points (N, 3). Rays go through pixel centres."""
    h, w = depth.shape
    uv = (yx[:, ::-1].astype(np.float64) + 0.5) / np.array([w, h])
    plane = np.concatenate([uv, np.ones((len(uv), 1))], -1) @ np.linalg.inv(intrinsics).T
    rays = plane / np.linalg.norm(plane, axis=-1, keepdims=True)
    camera = rays * depth[yx[:, 0], yx[:, 1]][:, None]
    world = np.concatenate([camera, np.ones((len(camera), 1))], -1) @ matrix_world.T
    return world[:, :3] / world[:, 3:]


def box_to_world(local: np.ndarray, bboxes_3d: np.ndarray) -> np.ndarray:
    """Points in box coordinates ``local`` (N, 3) in [−0.5, 0.5] → world (T, N, 3), with the affine
    map that best carries the unit box's corners onto the object's ``bboxes_3d`` (T, 8, 3) (least
    squares, corners in ``itertools.product`` order, as Kubric stores them)."""
    unit = np.array([[x, y, z, 1.0] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    corners = np.concatenate([bboxes_3d, np.ones(bboxes_3d.shape[:-1] + (1,))], -1)  # (T, 8, 4)
    maps = np.stack([np.linalg.lstsq(unit, c, rcond=None)[0] for c in corners])  # (T, 4, 4)
    homogeneous = np.concatenate([local, np.ones((len(local), 1))], -1)
    world = np.einsum("nj,tji->tni", homogeneous, maps)
    return world[..., :3] / world[..., 3:]


# ------------------------------------------------------------------------------ occlusion


def occluded_by_depth_or_segment(
    depth: np.ndarray, segments: np.ndarray, xy: np.ndarray, point_depth: np.ndarray, segment: int
) -> np.ndarray:
    """Kubric's visibility test around the projections ``xy`` (N, T, 2) raster px.

    Looks at the 4 pixels around each projection (clamped to the image): occluded when even the
    farthest of them is nearer than 0.99 × ``point_depth`` (N, T) (something lies in front), or
    when none of them belongs to ``segment``. ``depth`` (T, H, W) distances, ``segments`` (T, H, W).
    """
    num_frames, h, w = depth.shape
    # Raster → pixel-index coordinates, then the 4 neighbours.
    x = np.nan_to_num(xy[..., 0] - 0.5, nan=-1.0).clip(-2.0, w + 1.0)
    y = np.nan_to_num(xy[..., 1] - 0.5, nan=-1.0).clip(-2.0, h + 1.0)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    frames = np.arange(num_frames)[None, :]
    farthest = np.full(x.shape, -np.inf)
    on_segment = np.zeros(x.shape, bool)
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = (y0 + dy).clip(0, h - 1), (x0 + dx).clip(0, w - 1)
            farthest = np.maximum(farthest, depth[frames, yy, xx])
            on_segment |= segments[frames, yy, xx] == segment
    return (farthest < 0.99 * point_depth) | ~on_segment


def trusted_normals(normals: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) normals in [−1, 1] → (T, H, W) bool: at most 2 of the 4 diagonal neighbours
    (zero outside the image) differ by more than 0.05. Rough normals (normal maps, not meshes) are
    not trusted by the faces-away test."""
    h, w = normals.shape[1:3]
    padded = np.pad(normals, ((0, 0), (1, 1), (1, 1), (0, 0)))
    differing = np.zeros(normals.shape[:3], np.int64)
    for i in (0, 2):
        for j in (0, 2):
            diff = ((padded[:, i : i + h, j : j + w] - normals) ** 2).sum(-1)
            differing += diff > 0.05 * 0.05
    return differing <= 2


def faces_away(
    normals: np.ndarray,
    world: np.ndarray,
    camera_positions: np.ndarray,
    rotations: np.ndarray,
    query_frames: np.ndarray,
) -> np.ndarray:
    """Whether each point's surface faces away from the camera at each frame (N, T).

    ``normals`` (N, 3) world normals at the query frames, carried along with the object's rotation
    ``rotations`` (T, 3, 3); ``world`` (N, T, 3). A point that already faces away at its query frame
    is not flagged (a mesh defect, as Kubric reasons).
    """
    local = np.einsum("nij,nj->ni", np.linalg.inv(rotations[query_frames]), normals)
    per_frame = np.einsum("tij,nj->nti", rotations, local)
    away = ((world - camera_positions[None]) * per_frame).sum(-1) > 0
    away_at_query = away[np.arange(len(away)), query_frames]
    return away & ~away_at_query[:, None]


# ------------------------------------------------------------------------------ sampling


def allocate_tracks(counts: np.ndarray, max_seg_id: int, max_sampled_frac: float, total: int) -> np.ndarray:
    """Tracks per segment id (max_seg_id,) from the grid pixels per segment ``counts``.

    From the segment with the fewest pixels to the one with the most, each takes
    ``round(still needed / segments left)``, at most ``round(max_sampled_frac × its pixels)``.
    Rounding is half-to-even and the products float32, as in Kubric's TensorFlow code.
    """
    counts = np.asarray(counts, np.int64)
    if len(counts) > max_seg_id:
        raise ValueError(f"segment ids up to {len(counts) - 1}, but max_seg_id is {max_seg_id}")
    order = np.argsort(counts, kind="stable")
    taken = np.zeros(max_seg_id, np.int64)
    remaining = int(total)
    for position, seg in enumerate(order):
        share = np.float32(1.0 / (len(counts) - position))
        want = int(np.round(np.float32(remaining) * share))
        cap = int(np.round(np.float32(counts[seg]) * np.float32(max_sampled_frac)))
        taken[seg] = min(want, cap)
        remaining -= taken[seg]
    return taken


def _pad_tracks(arrays: list[np.ndarray], num_points: int) -> list[np.ndarray]:
    n = len(arrays[0])
    if n >= num_points or n == 0:
        return arrays
    row = n - 2 if n >= 2 else n - 1  # Kubric repeats arr[-2:-1]
    return [np.concatenate([a, np.repeat(a[row : row + 1], num_points - n, axis=0)]) for a in arrays]


def sample_kubric_tracks(
    example: dict[str, Any],
    num_points: int = 256,
    rng: np.random.Generator | None = None,
    sampling_stride: int = 4,
    max_seg_id: int = 25,
    max_sampled_frac: float = 0.1,
) -> dict[str, np.ndarray]:
    """Sample TAP-Vid tracks from a decoded MOVi-E example (the :data:`TRACK_FEATURES`).

    Returns ``query_points`` (N, 3) float32 (t, y, x) px, ``target_points`` (N, T, 2) float32
    (x, y) px, ``occluded`` (N, T) bool, at the video's own resolution, N = ``num_points``
    (fewer only if the video has fewer candidates than that).
    """
    rng = rng if rng is not None else np.random.default_rng()
    video = example["video"]
    num_frames, h, w = video.shape[:3]
    lo, hi = (float(v) for v in example["metadata"]["depth_range"])
    depth = lo + np.asarray(example["depth"], np.float64)[..., 0] * (hi - lo) / 65535.0
    segments = np.asarray(example["segmentations"])[..., 0].astype(np.int64)
    coordinates = np.asarray(example["object_coordinates"])
    camera = example["camera"]
    intrinsics, matrix_world = camera_matrices(
        camera["focal_length"], camera["sensor_width"], camera["positions"], camera["quaternions"], (h, w)
    )
    camera_positions = np.asarray(camera["positions"], np.float64)
    bboxes = np.asarray(example["instances"]["bboxes_3d"], np.float64)  # (K, T, 8, 3)
    object_quaternions = np.asarray(example["instances"]["quaternions"], np.float64)  # (K, T, 4)

    # The candidate grid: stride in t, y and x, random offsets.
    t0, y0, x0 = (int(v) for v in rng.integers(0, sampling_stride, size=3))
    grid = (slice(t0, None, sampling_stride), slice(y0, h, sampling_stride), slice(x0, w, sampling_stride))
    tt, yy, xx = np.meshgrid(
        np.arange(t0, num_frames, sampling_stride),
        np.arange(y0, h, sampling_stride),
        np.arange(x0, w, sampling_stride),
        indexing="ij",
    )
    pixels = np.stack([tt, yy, xx], -1).reshape(-1, 3)
    grid_segments = segments[grid].reshape(-1)
    grid_coordinates = coordinates[grid].reshape(-1, 3)
    # Normals only matter at query pixels: decode and test them on the grid's frames alone.
    normals = np.asarray(example["normal"][grid[0]], np.float64) / 65535.0 * 2.0 - 1.0
    grid_normals = normals[:, grid[1], grid[2]].reshape(-1, 3)
    grid_trusted = trusted_normals(normals)[:, grid[1], grid[2]].reshape(-1)
    per_segment = allocate_tracks(np.bincount(grid_segments), max_seg_id, max_sampled_frac, num_points)

    queries, tracks, occlusions = [], [], []
    for seg in range(max_seg_id):
        candidates = np.flatnonzero(grid_segments == seg)
        if len(candidates) == 0 or per_segment[seg] == 0:
            continue
        chosen = candidates[rng.integers(0, len(candidates), size=per_segment[seg])]
        query = pixels[chosen]
        if seg == 0:
            # The background is static: unproject each query with its own frame's depth, once.
            query = query[np.argsort(query[:, 0], kind="stable")]
            static = np.concatenate(
                [
                    unproject(query[query[:, 0] == f, 1:], intrinsics[f], matrix_world[f], depth[f])
                    for f in np.unique(query[:, 0])
                ]
            )
            world = np.broadcast_to(static, (num_frames,) + static.shape)
        else:
            k = seg - 1 if seg - 1 < len(bboxes) else 0
            local = grid_coordinates[chosen].astype(np.float64) / 65535.0 - 0.5
            world = box_to_world(local, bboxes[k])
        xy, in_front = project(world, intrinsics, matrix_world)  # (T, n, 2), (T, n)
        xy = (xy * np.array([w, h])).transpose(1, 0, 2)
        world = world.transpose(1, 0, 2)
        distance = np.linalg.norm(world - camera_positions[None], axis=-1)  # (n, T)
        occluded = ~in_front.T | ~np.isfinite(xy).all(-1)
        occluded |= occluded_by_depth_or_segment(depth, segments, xy, distance, seg)
        occluded |= (xy[..., 0] < 0) | (xy[..., 1] < 0) | (xy[..., 0] > w) | (xy[..., 1] > h)
        if seg > 0:
            rotations = quaternion_to_matrix(object_quaternions[k])
            away = faces_away(grid_normals[chosen], world, camera_positions, rotations, query[:, 0])
            occluded |= away & grid_trusted[chosen][:, None]
        queries.append(query.astype(np.float64) + np.array([0.0, 0.5, 0.5]))
        tracks.append(xy)
        occlusions.append(occluded)

    if not queries:
        empty = (
            np.zeros((0, 3), np.float32),
            np.zeros((0, num_frames, 2), np.float32),
            np.zeros((0, num_frames), bool),
        )
        return dict(zip(("query_points", "target_points", "occluded"), empty))
    query_points, target_points, occluded = _pad_tracks(
        [np.concatenate(queries), np.concatenate(tracks), np.concatenate(occlusions)], num_points
    )
    return {
        "query_points": query_points.astype(np.float32),
        "target_points": np.nan_to_num(target_points).astype(np.float32),
        "occluded": occluded.astype(bool),
    }
