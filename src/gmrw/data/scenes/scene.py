"""Layered scenes under smooth projective motion: rendering and exact ground truth.

A :class:`Scene` is a stack of layers, background first. Every layer is a texture image whose
pixel ``u = (u, v)`` (column, row; pixel centres at integers) appears at the frame position
``p = π(M_l(t) @ (u, v, 1))`` (π divides by the third coordinate), with ``M_l(t)`` a 3×3
homography that varies smoothly with time ``t`` (any real number, in frames). The background's
texture is the world plane, seen by the camera: ``M_0(t) = C(t)``; an object moves on that plane
with its own motion and is seen through the camera: ``M_l(t) = C(t) @ A_l(t)``. Objects have an
analytic outline (:class:`Shape`, a signed distance in texture pixels), so which layer covers a
point is known exactly at any position and time; higher layers occlude lower ones.

Frames are rendered by inverse warping: frame pixel ``p`` takes the colour of texture position
``M_l(t)⁻¹ p`` (bilinear, ``align_corners=True``), so the ground-truth track of texture point
``u`` is exactly ``π(M_l(t) u)``, and a point is occluded exactly when a higher layer's outline
covers it (coverage above 1/2, the same edge the renderer's alpha crosses 1/2 at) or it leaves the
frame. Frame coordinates: ``x`` is the column index, pixel centres at integers, the frame spans
``[0, W-1] × [0, H-1]``.

Everything random lives in the samplers (:mod:`gmrw.data.scenes.world`, :mod:`gmrw.data.photo_videos`);
this module is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def apply_homography(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points ``xy (..., 2)`` mapped by the 3×3 ``matrix``, with the perspective division."""
    x, y = xy[..., 0], xy[..., 1]
    w = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
    out_x = (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]) / w
    out_y = (matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]) / w
    return np.stack((out_x, out_y), axis=-1)


def _translation(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Motion:
    """A smooth path of homographies ``T(c(t)) @ P(tilt(t)) @ R(angle(t)) @ S(scale(t)) @ T(-anchor)``.

    The layer point ``anchor`` sits at ``c(t) = center + velocity·t + acceleration·t²/2``; about it
    the layer is scaled by ``exp(log_scale + zoom·t)``, rotated by ``angle + spin·t`` (radians) and
    given the perspective ``tilt + tilt_rate·t`` (the bottom row of the homography, per pixel: a
    tilt of 1e-3 makes a point 100 px from the anchor about 10 % smaller or larger).
    """

    anchor: tuple[float, float]
    center: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    acceleration: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    spin: float = 0.0
    log_scale: float = 0.0
    zoom: float = 0.0
    tilt: tuple[float, float] = (0.0, 0.0)
    tilt_rate: tuple[float, float] = (0.0, 0.0)

    def matrix(self, t: float) -> np.ndarray:
        cx = self.center[0] + self.velocity[0] * t + 0.5 * self.acceleration[0] * t * t
        cy = self.center[1] + self.velocity[1] * t + 0.5 * self.acceleration[1] * t * t
        s = math.exp(self.log_scale + self.zoom * t)
        angle = self.angle + self.spin * t
        c, n = math.cos(angle) * s, math.sin(angle) * s
        linear = np.array([[c, -n, 0.0], [n, c, 0.0], [0.0, 0.0, 1.0]])
        px, py = self.tilt[0] + self.tilt_rate[0] * t, self.tilt[1] + self.tilt_rate[1] * t
        perspective = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [px, py, 1.0]])
        return _translation(cx, cy) @ perspective @ linear @ _translation(-self.anchor[0], -self.anchor[1])


@dataclass(frozen=True)
class Shape:
    """An object outline in texture pixels: a super-ellipse ``(|x/a|^p + |y/b|^p)^(1/p) = 1``
    about ``center`` whose radius is modulated by ``1 + lobe_amplitude·cos(lobes·φ + lobe_phase)``."""

    center: tuple[float, float]
    semi_axes: tuple[float, float]
    power: float = 2.0
    lobes: int = 0
    lobe_amplitude: float = 0.0
    lobe_phase: float = 0.0

    def signed_distance(self, uv: np.ndarray) -> np.ndarray:
        """Approximate signed distance (texture px, positive inside) at points ``uv (..., 2)``."""
        a, b = self.semi_axes
        nx = (uv[..., 0] - self.center[0]) / a
        ny = (uv[..., 1] - self.center[1]) / b
        p = self.power
        radius = (np.abs(nx) ** p + np.abs(ny) ** p) ** (1.0 / p)
        limit = 1.0 + self.lobe_amplitude * np.cos(self.lobes * np.arctan2(ny, nx) + self.lobe_phase)
        return (limit - radius) * min(a, b)


@dataclass(frozen=True)
class Layer:
    """``texture`` (3, h, w) float32 in [0, 255]; ``motion``: texture px → world px (objects) or
    world → frame (the background: the camera); ``shape`` None for the opaque background."""

    texture: torch.Tensor
    motion: Motion
    shape: Shape | None = None


@dataclass(frozen=True)
class Scene:
    """A background and objects (z-order = list order) seen in ``height × width`` frames."""

    height: int
    width: int
    layers: tuple[Layer, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def matrix(self, layer: int, t: float) -> np.ndarray:
        """``M_l(t)``: texture px of ``layer`` → frame px at time ``t`` (3×3 homography)."""
        camera = self.layers[0].motion.matrix(t)
        return camera if layer == 0 else camera @ self.layers[layer].motion.matrix(t)

    def to_frame(self, layer: int, uv: np.ndarray, times: Sequence[float]) -> np.ndarray:
        """Texture points ``uv (N, 2)`` of ``layer`` → frame positions ``(N, T, 2)`` (x, y)."""
        return np.stack([apply_homography(self.matrix(layer, t), uv) for t in times], axis=1)

    def to_texture(self, layer: int, xy: np.ndarray, t: float) -> np.ndarray:
        """Frame positions ``xy (..., 2)`` at time ``t`` → texture px of ``layer``."""
        return apply_homography(np.linalg.inv(self.matrix(layer, t)), xy)

    def signed_distance(self, layer: int, xy: np.ndarray, t: float) -> np.ndarray:
        """How far inside ``layer``'s outline the frame points ``xy (..., 2)`` are (texture px);
        ``+inf`` for the background."""
        shape = self.layers[layer].shape
        if shape is None:
            return np.full(xy.shape[:-1], np.inf)
        return shape.signed_distance(self.to_texture(layer, xy, t))

    def top_layer(self, xy: np.ndarray, t: float) -> np.ndarray:
        """Index of the front-most layer covering each frame point ``xy (..., 2)`` at time ``t``."""
        top = np.zeros(xy.shape[:-1], dtype=np.int64)
        for layer in range(1, self.num_layers):
            top[self.signed_distance(layer, xy, t) > 0] = layer
        return top

    def tracks(
        self, layers: np.ndarray, uv: np.ndarray, times: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact ground truth of texture points ``uv (N, 2)`` on ``layers (N,)``.

        Returns positions ``(N, T, 2)`` (x, y) frame px and occlusion ``(N, T)`` bool: a point is
        occluded when it lies outside the frame or a higher layer covers it.
        """
        xy = np.empty((len(uv), len(times), 2))
        for layer in np.unique(layers):
            chosen = layers == layer
            xy[chosen] = self.to_frame(int(layer), uv[chosen], times)
        occluded = (
            (xy[..., 0] < 0)
            | (xy[..., 0] > self.width - 1)
            | (xy[..., 1] < 0)
            | (xy[..., 1] > self.height - 1)
        )
        for i, t in enumerate(times):
            occluded[:, i] |= self.top_layer(xy[:, i], t) > layers
        return xy, occluded


def render(scene: Scene, times: Sequence[float], with_layers: bool = False):
    """Frames of ``scene`` at ``times``: ``(T, 3, H, W)`` float32 in [0, 255].

    Objects get a soft edge about one frame pixel wide whose alpha crosses 1/2 exactly on the
    outline. With ``with_layers`` also returns the front-most layer of every pixel ``(T, H, W)``
    int64 (coverage above 1/2, as :meth:`Scene.top_layer`).
    """
    h, w = scene.height, scene.width
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    pixels = np.stack([xs, ys], axis=-1)  # (H, W, 2)
    frames = None
    top = np.zeros((len(times), h, w), dtype=np.int64)
    for index, layer in enumerate(scene.layers):
        uv = np.stack([scene.to_texture(index, pixels, t) for t in times])  # (T, H, W, 2)
        th, tw = layer.texture.shape[-2:]
        grid = torch.from_numpy(uv * [2.0 / (tw - 1), 2.0 / (th - 1)] - 1.0).float()
        colour = F.grid_sample(
            layer.texture[None],
            grid.reshape(1, len(times) * h, w, 2),
            mode="bilinear",
            padding_mode="reflection",
            align_corners=True,
        )[0]
        colour = colour.reshape(3, len(times), h, w).transpose(0, 1)
        if layer.shape is None:
            frames = colour
            continue
        distance = layer.shape.signed_distance(uv)  # texture px
        # Frame px per texture px near the object, so the soft edge is ~1 frame px whatever the zoom.
        scale = np.array([_linear_scale(scene.matrix(index, t), layer.shape.center) for t in times])
        alpha = torch.from_numpy(np.clip(distance * scale[:, None, None] + 0.5, 0.0, 1.0)).float()[:, None]
        frames = frames * (1 - alpha) + colour * alpha
        top[distance > 0] = index
    frames = frames.clamp_(0.0, 255.0)
    return (frames, torch.from_numpy(top)) if with_layers else frames


def _linear_scale(matrix: np.ndarray, point: tuple[float, float]) -> float:
    """Local magnification (frame px per texture px) of a homography at ``point``."""
    eps = 0.5
    base = np.array(point, dtype=np.float64)
    probe = np.stack([base, base + (eps, 0.0), base + (0.0, eps)])
    mapped = apply_homography(matrix, probe)
    jacobian = np.stack([mapped[1] - mapped[0], mapped[2] - mapped[0]], axis=1) / eps
    return float(math.sqrt(abs(np.linalg.det(jacobian))))


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """``(T, 3, H, W)`` float [0, 255] → ``(T, H, W, 3)`` uint8."""
    return frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# Batches of 256 candidate points drawn before sample_points settles for fewer points.
_MAX_ATTEMPTS = 40


def sample_points(
    scene: Scene,
    rng: np.random.Generator,
    num_points: int,
    times: Sequence[float],
    object_fraction: float = 0.5,
    margin: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` texture points, each clearly visible at one of ``times``.

    A candidate is a random time and a random frame position then; it is kept when it lies at
    least ``margin`` texture px inside its front-most layer and that far outside every higher one,
    so its colour is not a blend of layers. About ``object_fraction`` of the points lie on objects
    (fewer when they cover too little). Returns ``(layers (N,), uv (N, 2))`` in random order.
    """
    picked_layers: list[np.ndarray] = []
    picked_uv: list[np.ndarray] = []
    want_objects = round(num_points * object_fraction) if scene.num_layers > 1 else 0
    want = {True: want_objects, False: num_points - want_objects}
    have = {True: 0, False: 0}
    for attempt in range(_MAX_ATTEMPTS):
        if attempt == _MAX_ATTEMPTS // 2:
            # The objects cover too little (or left the frame): fill up with background points.
            want[False] += want[True] - have[True]
            want[True] = have[True]
        t = times[int(rng.integers(len(times)))]
        xy = rng.uniform([0, 0], [scene.width - 1, scene.height - 1], size=(256, 2))
        distances = np.stack([scene.signed_distance(layer, xy, t) for layer in range(scene.num_layers)])
        top = scene.top_layer(xy, t)
        own = np.take_along_axis(distances, top[None], 0)[0]
        above = np.where(np.arange(scene.num_layers)[:, None] > top[None], distances, -np.inf).max(0)
        clean = (own >= margin) & (above <= -margin)
        for on_object in (True, False):
            chosen = np.flatnonzero(clean & ((top > 0) == on_object))[: want[on_object] - have[on_object]]
            for layer in np.unique(top[chosen]):
                members = chosen[top[chosen] == layer]
                picked_layers.append(np.full(len(members), layer, dtype=np.int64))
                picked_uv.append(scene.to_texture(int(layer), xy[members], t))
            have[on_object] += len(chosen)
        if have[True] >= want[True] and have[False] >= want[False]:
            break
    layers = np.concatenate(picked_layers) if picked_layers else np.zeros(0, dtype=np.int64)
    uv = np.concatenate(picked_uv) if picked_uv else np.zeros((0, 2))
    order = rng.permutation(len(layers))
    return layers[order], uv[order]
