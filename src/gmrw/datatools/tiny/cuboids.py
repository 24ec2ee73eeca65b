"""A tiny ray-cast scene that renders every per-pixel layer MOVi-E stores, with known geometry.

Used by :mod:`gmrw.datatools.tiny.movi_e` to write a MOVi-E TFDS folder whose depth, segmentation, object
coordinates, surface normals, flows, camera and object poses all agree with each other, so that
tests can check geometric readers (TAP-Vid-Kubric track sampling) against the true answer.

The scene: a textured ground plane ``z = 0`` (segment 0, Kubric's background) and cuboids
(segments 1, 2, …), seen by a pinhole camera. Conventions are Kubric's (Blender's):

* quaternions are ``(w, x, y, z)``; a camera looks along its local −z with +y up and +x right;
* the sensor fits horizontally: ``focal_length / sensor_width · W`` pixels per unit of x / −z;
* image positions are raster coordinates: pixel ``(row, col)`` covers ``[col, col + 1)`` in x,
  its centre is at ``col + 0.5``;
* depth is the distance from the camera centre (not the z-value);
* object coordinates are a surface point's position in its cuboid, scaled to ``[0, 1]`` per axis;
* ``bboxes_3d`` lists the cuboid's world corners in ``itertools.product`` order of
  (x, y, z) ∈ {min, max}³, as Kubric's ``bbox_3d``.

Everything here is written from the camera model itself (rays through pixel centres, explicit
ray/box intersection) and shares no code with the reader in :mod:`gmrw.data.readers.kubric_tracks`.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy.spatial.transform import Rotation


def rotation(quaternions_wxyz: np.ndarray) -> np.ndarray:
    """(…, 4) quaternions (w, x, y, z) → (…, 3, 3) rotation matrices."""
    q = np.asarray(quaternions_wxyz, dtype=np.float64)
    flat = q.reshape(-1, 4)[:, [1, 2, 3, 0]]  # scipy wants scalar-last
    return Rotation.from_quat(flat).as_matrix().reshape(q.shape[:-1] + (3, 3))


def yaw_pitch_quaternion(yaw: float, pitch: float = 0.0) -> np.ndarray:
    """(w, x, y, z) of a rotation by ``yaw`` about world z after ``pitch`` about the local x axis.

    With ``pitch = 0`` a camera looks straight down (−z); a positive pitch tilts it toward +y.
    """
    r = Rotation.from_euler("z", yaw) * Rotation.from_euler("x", pitch)
    x, y, z, w = r.as_quat()
    return np.array([w, x, y, z])


@dataclasses.dataclass
class Cuboid:
    """A rigid box: ``size`` (3,) edge lengths; per frame ``positions`` (T, 3) of its centre and
    ``quaternions`` (T, 4) (w, x, y, z)."""

    size: np.ndarray
    positions: np.ndarray
    quaternions: np.ndarray
    color: tuple[float, float, float] = (0.9, 0.3, 0.2)

    def corners(self) -> np.ndarray:
        """(T, 8, 3) world corners in Kubric's order."""
        half = np.asarray(self.size, np.float64) / 2
        local = np.array(list(itertools.product(*[(-h, h) for h in half])))  # (8, 3)
        rot = rotation(self.quaternions)
        return np.einsum("tij,kj->tki", rot, local) + np.asarray(self.positions)[:, None]

    def to_world(self, unit: np.ndarray, t: int | np.ndarray) -> np.ndarray:
        """Points given as object coordinates ``unit`` (…, 3) in [0, 1] → world (…, 3) at frame(s) ``t``."""
        local = (np.asarray(unit) - 0.5) * np.asarray(self.size)
        rot = rotation(np.asarray(self.quaternions)[t])
        return np.einsum("...ij,...j->...i", rot, local) + np.asarray(self.positions)[t]


@dataclasses.dataclass
class CuboidScene:
    """Camera poses ``camera_positions`` (T, 3), ``camera_quaternions`` (T, 4) (w, x, y, z); image
    ``height`` × ``width``; ``cuboids`` (segment ids 1, 2, … in order); the plane is segment 0."""

    height: int
    width: int
    camera_positions: np.ndarray
    camera_quaternions: np.ndarray
    cuboids: list[Cuboid]
    focal_length: float = 35.0
    sensor_width: float = 32.0
    texture_seed: int = 0

    @property
    def num_frames(self) -> int:
        return len(self.camera_positions)

    @property
    def pixels_per_unit(self) -> float:
        return self.focal_length / self.sensor_width * self.width

    # ------------------------------------------------------------------ camera model

    def rays(self, t: int, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rays through raster points ``xy`` (…, 2) (x, y) px at frame ``t``: origin (3,), unit directions (…, 3)."""
        xy = np.asarray(xy, np.float64)
        k = self.pixels_per_unit
        cam = np.stack(
            [(xy[..., 0] - self.width / 2) / k, -(xy[..., 1] - self.height / 2) / k, -np.ones(xy.shape[:-1])],
            -1,
        )
        world = cam @ rotation(self.camera_quaternions[t]).T
        return np.asarray(self.camera_positions[t], np.float64), world / np.linalg.norm(
            world, axis=-1, keepdims=True
        )

    def project(self, points: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """World points (…, 3) → raster (x, y) px (…, 2) at frame ``t``, and whether each is in front."""
        rel = np.asarray(points, np.float64) - self.camera_positions[t]
        cam = rel @ rotation(self.camera_quaternions[t])  # R^T · rel, row-wise
        ahead = -cam[..., 2]
        k = self.pixels_per_unit
        with np.errstate(divide="ignore", invalid="ignore"):
            x = self.width / 2 + k * cam[..., 0] / ahead
            y = self.height / 2 - k * cam[..., 1] / ahead
        return np.stack([x, y], -1), ahead > 0

    def cast(self, t: int, xy: np.ndarray) -> dict[str, np.ndarray]:
        """First surface hit by the rays through ``xy`` (…, 2) at frame ``t``.

        Returns ``segment`` (…) int (−1: nothing), ``distance`` (…), ``point`` (…, 3) world,
        ``normal`` (…, 3) world unit normal, ``unit`` (…, 3) object coordinates in [0, 1] (0 on the plane).
        """
        origin, d = self.rays(t, xy)
        shape = d.shape[:-1]
        best = np.full(shape, np.inf)
        seg = np.full(shape, -1, np.int64)
        normal = np.zeros(shape + (3,))
        unit = np.zeros(shape + (3,))
        with np.errstate(divide="ignore", invalid="ignore"):
            s_plane = np.where(d[..., 2] < 0, -origin[2] / d[..., 2], np.inf)
        hit = s_plane < best
        best = np.where(hit, s_plane, best)
        seg[hit] = 0
        normal[hit] = (0.0, 0.0, 1.0)
        for k, box in enumerate(self.cuboids, start=1):
            rot = rotation(box.quaternions[t])
            half = np.asarray(box.size, np.float64) / 2
            o = (origin - box.positions[t]) @ rot  # into the box frame
            dl = d @ rot
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (-half - o) / dl, (half - o) / dl
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            near = np.nan_to_num(near, nan=-np.inf)
            far = np.nan_to_num(far, nan=np.inf)
            enter, leave = near.max(-1), far.min(-1)
            hit = (enter <= leave) & (enter > 0) & (enter < best)
            best = np.where(hit, enter, best)
            seg[hit] = k
            axis = near.argmax(-1)
            face = np.zeros(shape + (3,))
            np.put_along_axis(
                face, axis[..., None], -np.sign(np.take_along_axis(dl, axis[..., None], -1)), -1
            )
            normal[hit] = (face @ rot.T)[hit]
            local = o + enter[..., None] * dl
            unit[hit] = np.clip(local / np.asarray(box.size) + 0.5, 0.0, 1.0)[hit]
        point = origin + np.where(np.isfinite(best), best, 0.0)[..., None] * d
        return {"segment": seg, "distance": best, "point": point, "normal": normal, "unit": unit}

    def surface_to_world(self, segment: int, point_or_unit: np.ndarray, t: int | np.ndarray) -> np.ndarray:
        """Surface point(s) at frame(s) ``t``: the plane is static (``point_or_unit`` is a world
        point); a cuboid point is given by its object coordinates. Either many points (N, 3) at one
        frame, or one point (3,) at frames ``t`` (T,) → (T, 3)."""
        if segment == 0:
            point = np.asarray(point_or_unit, np.float64)
            return np.broadcast_to(point, np.shape(t) + point.shape)
        return self.cuboids[segment - 1].to_world(point_or_unit, t)

    # ------------------------------------------------------------------ rendering

    def pixel_centres(self) -> np.ndarray:
        rows, cols = np.meshgrid(np.arange(self.height), np.arange(self.width), indexing="ij")
        return np.stack([cols + 0.5, rows + 0.5], -1)

    def _texture(self, seg: np.ndarray, point: np.ndarray, unit: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.texture_seed)
        phase = rng.uniform(0, 2 * np.pi, 3)
        x, y = point[..., 0], point[..., 1]
        checker = (np.floor(x) + np.floor(y)) % 2
        ground = (
            0.35 + 0.25 * checker[..., None] + 0.2 * np.sin(0.7 * x[..., None] + 1.3 * y[..., None] + phase)
        )
        rgb = ground
        for k, box in enumerate(self.cuboids, start=1):
            cells = np.floor(unit * 4).sum(-1) % 2
            shade = np.asarray(box.color) * (0.7 + 0.3 * cells[..., None])
            rgb = np.where((seg == k)[..., None], shade, rgb)
        return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)

    def render(self) -> dict[str, np.ndarray]:
        """Every layer, unquantised: ``video`` (T, H, W, 3) uint8, ``segmentations`` (T, H, W) int,
        ``depth`` (T, H, W) distance, ``normal`` (T, H, W, 3) in [−1, 1], ``object_coordinates``
        (T, H, W, 3) in [0, 1], ``forward_flow`` / ``backward_flow`` (T, H, W, 2) (d_row, d_col) px as
        Kubric stores them (forward at t: motion t → t+1; backward at t: motion t−1 → t; zero where
        there is no partner frame)."""
        xy = self.pixel_centres()
        layers: dict[str, list] = {k: [] for k in ("video", "segmentations", "depth", "normal", "unit")}
        fwd = np.zeros((self.num_frames, self.height, self.width, 2))
        bwd = np.zeros_like(fwd)
        for t in range(self.num_frames):
            hit = self.cast(t, xy)
            if (hit["segment"] < 0).any():
                raise ValueError(f"frame {t}: some pixels see no surface; point the camera at the ground")
            layers["video"].append(self._texture(hit["segment"], hit["point"], hit["unit"]))
            layers["segmentations"].append(hit["segment"])
            layers["depth"].append(hit["distance"])
            layers["normal"].append(hit["normal"])
            layers["unit"].append(hit["unit"])
            for other, out, sign in ((t + 1, fwd, 1.0), (t - 1, bwd, -1.0)):
                if not 0 <= other < self.num_frames:
                    continue
                moved = np.zeros(xy.shape[:-1] + (2,))
                for k in np.unique(hit["segment"]):
                    on = hit["segment"] == k
                    src = hit["point"][on] if k == 0 else hit["unit"][on]
                    moved[on] = self.project(self.surface_to_world(int(k), src, other), other)[0]
                # forward: where the point goes minus where it is; backward: where it is minus where it was.
                out[t] = (sign * (moved - xy))[..., ::-1]
        return {
            "video": np.stack(layers["video"]),
            "segmentations": np.stack(layers["segmentations"]),
            "depth": np.stack(layers["depth"]),
            "normal": np.stack(layers["normal"]),
            "object_coordinates": np.stack(layers["unit"]),
            "forward_flow": fwd,
            "backward_flow": bwd,
        }

    def visible(self, segment: int, point_or_unit: np.ndarray, t: int, tolerance: float = 1e-3) -> bool:
        """Whether a surface point is seen at frame ``t``: in front of the camera, inside the image,
        and the first surface on the ray through its projection."""
        world = self.surface_to_world(segment, point_or_unit, t)
        xy, ahead = self.project(world, t)
        if not ahead or not (0 <= xy[0] <= self.width and 0 <= xy[1] <= self.height):
            return False
        hit = self.cast(t, xy[None])
        dist = np.linalg.norm(world - self.camera_positions[t])
        return bool(hit["segment"][0] == segment and abs(hit["distance"][0] - dist) < tolerance)


def sliding_cube_scene(
    num_frames: int, height: int, width: int, seed: int = 0, pitch: float = 0.3
) -> CuboidScene:
    """A camera about 10 units above the ground, tilted by ``pitch`` and turned by a seeded yaw,
    drifting slowly; a static box, and a box that slides across the whole view while turning about
    z, passing over the ground (so ground points are covered, then uncovered) and leaving the image."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float64)
    yaw = rng.uniform(-np.pi, np.pi)
    cam_q = np.tile(yaw_pitch_quaternion(yaw, pitch), (num_frames, 1))
    # Keep the point the camera looks at near the origin: the view axis hits z = 0 at pos + s·d.
    view = rotation(cam_q[0]) @ np.array([0.0, 0.0, -1.0])
    height_above = 10.0
    centre = -view * height_above / -view[2]
    drift = np.stack([0.04 * t, -0.03 * t, np.zeros_like(t)], -1)
    cam_pos = centre[None] + drift
    # Directions in the ground plane matching the image's right and down, at this yaw.
    right = rotation(cam_q[0]) @ np.array([1.0, 0.0, 0.0])
    right[2] = 0.0
    right /= np.linalg.norm(right)
    down = np.cross(right, [0.0, 0.0, 1.0])
    size = np.array([2.2, 1.6, 1.2])
    sweep = np.linspace(-7.5, 7.5, num_frames)
    moving_pos = sweep[:, None] * right + 0.3 * down + np.array([0.0, 0.0, size[2] / 2])
    moving_q = np.stack([yaw_pitch_quaternion(yaw + 0.08 * k) for k in t])
    static_size = np.array([1.4, 1.4, 0.8])
    static_pos = np.tile(
        -2.8 * down + 1.5 * right + np.array([0.0, 0.0, static_size[2] / 2]), (num_frames, 1)
    )
    static_q = np.tile(yaw_pitch_quaternion(yaw + 0.5), (num_frames, 1))
    return CuboidScene(
        height=height,
        width=width,
        camera_positions=cam_pos,
        camera_quaternions=cam_q,
        cuboids=[
            Cuboid(size, moving_pos, moving_q, color=(0.9, 0.3, 0.2)),
            Cuboid(static_size, static_pos, static_q, color=(0.2, 0.4, 0.9)),
        ],
        texture_seed=seed,
    )


def translating_camera_scene(
    num_frames: int, height: int, width: int, motion_rowcol: tuple[float, float], seed: int = 0
) -> CuboidScene:
    """A camera looking straight down and translating parallel to the ground so that the ground's
    image moves by exactly ``motion_rowcol`` = (d_row, d_col) px per frame; one box, out of view."""
    t = np.arange(num_frames, dtype=np.float64)
    height_above = 10.0
    cam = CuboidScene(height, width, np.zeros((num_frames, 3)), np.tile([1.0, 0, 0, 0], (num_frames, 1)), [])
    step = height_above / cam.pixels_per_unit
    # Straight down with no rotation: image right is world +x, image down is world −y. The ground's
    # image moves opposite to the camera.
    d_row, d_col = motion_rowcol
    velocity = np.array([-d_col * step, d_row * step, 0.0])
    cam.camera_positions = np.array([0.0, 0.0, height_above]) + t[:, None] * velocity
    size = np.array([1.0, 1.0, 1.0])
    far = np.tile([500.0, 500.0, 0.5], (num_frames, 1))
    cam.cuboids = [Cuboid(size, far, np.tile([1.0, 0, 0, 0], (num_frames, 1)))]
    cam.texture_seed = seed
    return cam
