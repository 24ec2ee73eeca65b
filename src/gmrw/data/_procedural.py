"""Procedural layered scenes: textures, affine motions, rendering and exact ground truth.

A :class:`Scene` is a stack of layers, background first. Every layer is a texture image whose
pixel ``(u, v)`` (column, row; pixel centres at integers) lies at the frame position
``M_l(t) @ (u, v, 1)``, with ``M_l(t)`` a 3×3 affine that varies smoothly with time ``t``
(any real number). The background moves with the camera, ``M_0(t) = B(t)``; a sprite moves in
background ("world") coordinates and is seen through the camera, ``M_l(t) = B(t) @ S_l(t)``.
Sprites have an analytic shape (a super-ellipse with a few lobes) given as a signed distance in
texture pixels, so their coverage can be evaluated exactly at any point. Higher layers occlude
lower ones.

Frames are rendered by inverse warping: frame pixel ``p`` takes the texture colour at
``M_l(t)^-1 p`` (bilinear, ``align_corners=True``), so the ground truth track of a texture point
``u`` is exactly ``M_l(t) u``. Frame coordinates follow the same convention: ``x`` is the column
index, pixel centres at integers, the frame spans ``[0, W-1] × [0, H-1]``.

Everything random comes from a ``numpy.random.Generator`` passed in; nothing here touches a
global random state.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Photos and textures that ship inside the scikit-image wheel (skimage/data/*.png|jpg); none of
# them is fetched with pooch, so the synthetic data works offline. Mostly busy images: matching
# needs texture everywhere.
_COLOUR_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "stereo_motorcycle")
_GRAY_IMAGES = ("camera", "coins", "grass", "gravel", "brick", "text", "clock", "cell")
# Textures are stored with this shorter side: a 64-80 px frame shows about half a photo.
_TEXTURE_SIDE = 160


@dataclass(frozen=True)
class Texture:
    name: str
    image: torch.Tensor  # (C, h, w) float32 in [0, 255], C = 3 (colour) or 1 (gray)


@functools.lru_cache(maxsize=1)
def load_textures() -> tuple[Texture, ...]:
    """The bundled scikit-image photos, resized to a shorter side of 160 px and given local
    contrast (CLAHE) so that flat regions still carry texture; cached per process."""
    import skimage.data
    import skimage.exposure

    textures = []
    for name in _COLOUR_IMAGES + _GRAY_IMAGES:
        array = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":
            array = array[0]
        image = torch.from_numpy(np.ascontiguousarray(array)).float()
        image = image[None] if image.ndim == 2 else image[..., :3].permute(2, 0, 1)
        h, w = image.shape[-2:]
        scale = _TEXTURE_SIDE / min(h, w)
        size = (round(h * scale), round(w * scale))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        array = image.clamp(0, 255).permute(1, 2, 0).numpy() / 255.0
        array = skimage.exposure.equalize_adapthist(array[..., 0] if array.shape[-1] == 1 else array)
        image = torch.from_numpy(np.asarray(array, dtype=np.float32) * 255.0)
        image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
        textures.append(Texture(name, image.contiguous()))
    return tuple(textures)


# --------------------------------------------------------------------------------- motions


def _affine(center, angle: float, log_scale: float, anchor) -> np.ndarray:
    """``T(center) @ R(angle) @ S(exp(log_scale)) @ T(-anchor)`` as a 3×3 matrix."""
    s = math.exp(log_scale)
    c, n = math.cos(angle) * s, math.sin(angle) * s
    ax, ay = anchor
    return np.array(
        [
            [c, -n, center[0] - c * ax + n * ay],
            [n, c, center[1] - n * ax - c * ay],
            [0.0, 0.0, 1.0],
        ]
    )


@dataclass(frozen=True)
class Motion:
    """An affine motion linear in its parameters: at time ``t`` the layer point ``anchor`` sits at
    ``center + velocity * t``, rotated by ``angle + spin * t`` and scaled by
    ``exp(log_scale + zoom * t)`` about it."""

    anchor: tuple[float, float]
    center: tuple[float, float]
    velocity: tuple[float, float]
    angle: float
    spin: float
    log_scale: float
    zoom: float

    def matrix(self, t: float) -> np.ndarray:
        center = (self.center[0] + self.velocity[0] * t, self.center[1] + self.velocity[1] * t)
        return _affine(center, self.angle + self.spin * t, self.log_scale + self.zoom * t, self.anchor)


@dataclass(frozen=True)
class Shape:
    """A sprite outline in texture pixels: a super-ellipse ``(|x/a|^p + |y/b|^p)^(1/p) = 1`` about
    ``center`` whose radius is modulated by ``1 + lobe_amplitude * cos(lobes * phi + lobe_phase)``."""

    center: tuple[float, float]
    semi_axes: tuple[float, float]
    power: float
    lobes: int
    lobe_amplitude: float
    lobe_phase: float

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
    texture: torch.Tensor  # (3, h, w) float32 in [0, 255]
    motion: Motion  # texture px → background px (sprites) or → frame px (background)
    shape: Shape | None = None  # None: the opaque background


@dataclass(frozen=True)
class Scene:
    """A background and sprites (z-order = list order) seen in ``height × width`` frames."""

    height: int
    width: int
    layers: tuple[Layer, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def matrix(self, layer: int, t: float) -> np.ndarray:
        """``M_l(t)``: texture px of ``layer`` → frame px at time ``t`` (3×3)."""
        camera = self.layers[0].motion.matrix(t)
        return camera if layer == 0 else camera @ self.layers[layer].motion.matrix(t)

    def to_frame(self, layer: int, uv: np.ndarray, times) -> np.ndarray:
        """Texture points ``uv (N, 2)`` of ``layer`` → frame positions ``(N, T, 2)`` (x, y)."""
        out = np.empty((len(uv), len(times), 2))
        for i, t in enumerate(times):
            m = self.matrix(layer, t)
            out[:, i] = uv @ m[:2, :2].T + m[:2, 2]
        return out

    def to_texture(self, layer: int, xy: np.ndarray, t: float) -> np.ndarray:
        """Frame positions ``xy (..., 2)`` at time ``t`` → texture px of ``layer``."""
        m = np.linalg.inv(self.matrix(layer, t))
        return xy @ m[:2, :2].T + m[:2, 2]

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

    def tracks(self, layers: np.ndarray, uv: np.ndarray, times) -> tuple[np.ndarray, np.ndarray]:
        """Exact ground truth of texture points ``uv (N, 2)`` on ``layers (N,)``.

        Returns positions ``(N, T, 2)`` (x, y) frame px and occlusion ``(N, T)`` bool: a point is
        occluded when it lies outside the frame or a higher layer covers it.
        """
        n = len(uv)
        xy = np.empty((n, len(times), 2))
        for layer in np.unique(layers):
            sel = layers == layer
            xy[sel] = self.to_frame(int(layer), uv[sel], times)
        outside = (
            (xy[..., 0] < 0)
            | (xy[..., 0] > self.width - 1)
            | (xy[..., 1] < 0)
            | (xy[..., 1] > self.height - 1)
        )
        occluded = outside.copy()
        for i, t in enumerate(times):
            cover = self.top_layer(xy[:, i], t)
            occluded[:, i] |= cover > layers
        return xy, occluded


# --------------------------------------------------------------------------------- rendering


def render(scene: Scene, times, with_layers: bool = False):
    """Frames of ``scene`` at ``times``: ``(T, 3, H, W)`` float32 in [0, 255].

    With ``with_layers`` also returns the front-most layer index of every pixel ``(T, H, W)``
    int64 (coverage > 1/2, as in :meth:`Scene.top_layer`).
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
        distance = layer.shape.signed_distance(uv)
        # A one-texture-pixel soft edge; coverage 1/2 exactly on the outline.
        alpha = torch.from_numpy(np.clip(distance + 0.5, 0.0, 1.0)).float()[:, None]
        frames = frames * (1 - alpha) + colour * alpha
        top[distance > 0] = index
    frames = frames.clamp_(0.0, 255.0)
    return (frames, torch.from_numpy(top)) if with_layers else frames


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """``(T, 3, H, W)`` float [0, 255] → ``(T, H, W, 3)`` uint8."""
    return frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# --------------------------------------------------------------------------------- sampling


def _contrasting_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` random RGB colours, consecutive ones at least 180 apart (L1)."""
    colours = [rng.uniform(0, 255, 3)]
    while len(colours) < count:
        candidate = rng.uniform(0, 255, 3)
        if np.abs(candidate - colours[-1]).sum() >= 180:
            colours.append(candidate)
    return np.stack(colours)


def _recolour(texture: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random colour variant ``(3, h, w)``: gray images through a random three-colour ramp,
    colour images with permuted (and sometimes inverted) channels; random flips."""
    if texture.shape[0] == 1:
        low, mid, high = (torch.from_numpy(c).float()[:, None, None] for c in _contrasting_colours(rng, 3))
        ramp = texture * (2 / 255.0)
        out = torch.where(ramp < 1, low + (mid - low) * ramp, mid + (high - mid) * (ramp - 1))
    else:
        out = texture[torch.from_numpy(rng.permutation(3))]
        if rng.random() < 0.25:
            out = 255.0 - out
    if rng.random() < 0.5:
        out = out.flip(-1)
    if rng.random() < 0.5:
        out = out.flip(-2)
    return out.contiguous()


def _pick_texture(rng: np.random.Generator, colour_probability: float) -> Texture:
    textures = load_textures()
    colour = [t for t in textures if t.image.shape[0] == 3]
    gray = [t for t in textures if t.image.shape[0] == 1]
    pool = colour if rng.random() < colour_probability else gray
    return pool[int(rng.integers(len(pool)))]


def _direction(rng: np.random.Generator, speed: float) -> tuple[float, float]:
    heading = rng.uniform(0, 2 * math.pi)
    return (speed * math.cos(heading), speed * math.sin(heading))


def sample_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_sprites: int = 4,
    motion_scale: float = 1.0,
) -> Scene:
    """A random scene: a photo background under a slow camera motion (translation, rotation,
    zoom) and ``num_sprites`` textured shapes with their own affine motions.

    ``motion_scale`` scales every speed; at 1 the camera moves up to 1.5 px per frame and a
    sprite up to 2.5 px per frame relative to the background.
    """
    side = min(height, width)
    # Background: a whole (resized) photo blended with a second texture for detail everywhere,
    # anchored so that the frame starts well inside it.
    texture = _recolour(_pick_texture(rng, 0.75).image, rng)
    detail = _recolour(_pick_texture(rng, 0.25).image, rng)
    th, tw = min(texture.shape[-2], detail.shape[-2]), min(texture.shape[-1], detail.shape[-1])
    weight = rng.uniform(0.25, 0.45)
    texture = ((1 - weight) * texture[:, :th, :tw] + weight * detail[:, :th, :tw]).contiguous()
    th, tw = texture.shape[-2:]
    half_w, half_h = 0.6 * width, 0.6 * height
    anchor = (
        rng.uniform(min(half_w, tw / 2), max(tw - half_w, tw / 2)),
        rng.uniform(min(half_h, th / 2), max(th - half_h, th / 2)),
    )
    camera = Motion(
        anchor=anchor,
        center=((width - 1) / 2, (height - 1) / 2),
        velocity=_direction(rng, motion_scale * rng.uniform(0.0, 1.5)),
        angle=rng.uniform(-0.2, 0.2),
        spin=motion_scale * math.radians(rng.uniform(-1.0, 1.0)),
        log_scale=rng.uniform(-0.2, 0.2),
        zoom=motion_scale * rng.uniform(-0.01, 0.01),
    )
    layers = [Layer(texture, camera)]
    # Where the frame centre is in background coordinates at t = 0: sprites start around it.
    inverse = np.linalg.inv(camera.matrix(0.0))
    for _ in range(num_sprites):
        radius = rng.uniform(0.12, 0.24) * side
        aspect = rng.uniform(0.6, 1.0)
        semi_axes = (radius, radius * aspect) if rng.random() < 0.5 else (radius * aspect, radius)
        amplitude = rng.uniform(0.0, 0.2)
        size = int(math.ceil(2 * radius * (1 + amplitude))) + 4
        # A zoomed-out crop of a photo, so that even a small sprite shows some structure.
        source = _pick_texture(rng, 0.5).image
        sh, sw = source.shape[-2:]
        crop = min(int(size * rng.uniform(1.0, 2.5)), sh, sw)
        y0, x0 = int(rng.integers(0, sh - crop + 1)), int(rng.integers(0, sw - crop + 1))
        patch = source[None, :, y0 : y0 + crop, x0 : x0 + crop]
        patch = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        patch = _recolour(patch[0], rng)
        centre = ((size - 1) / 2, (size - 1) / 2)
        shape = Shape(
            center=centre,
            semi_axes=semi_axes,
            power=float(rng.choice([2.0, 2.0, 3.0, 4.0])),
            lobes=int(rng.integers(2, 6)),
            lobe_amplitude=amplitude,
            lobe_phase=rng.uniform(0, 2 * math.pi),
        )
        start = np.array([rng.uniform(0.1, 0.9) * (width - 1), rng.uniform(0.1, 0.9) * (height - 1), 1.0])
        start = inverse @ start
        motion = Motion(
            anchor=centre,
            center=(float(start[0]), float(start[1])),
            velocity=_direction(rng, motion_scale * rng.uniform(0.3, 2.5)),
            angle=rng.uniform(-math.pi, math.pi),
            spin=motion_scale * math.radians(rng.uniform(-4.0, 4.0)),
            log_scale=rng.uniform(-0.15, 0.15),
            zoom=motion_scale * rng.uniform(-0.02, 0.02),
        )
        layers.append(Layer(patch, motion, shape))
    return Scene(height, width, tuple(layers))


# Batches of 256 candidate points drawn before sample_points settles for fewer points.
_MAX_ATTEMPTS = 40


def sample_points(
    scene: Scene,
    rng: np.random.Generator,
    num_points: int,
    num_frames: int,
    sprite_fraction: float = 0.5,
    margin: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` texture points, each visible somewhere in frames ``0..num_frames-1``.

    A candidate is a random frame and a random position there; it is kept when it lies at least
    ``margin`` texture px inside its front-most layer and that far outside every higher one, so
    its colour is not a blend of layers. About ``sprite_fraction`` of the points lie on sprites
    (fewer when the sprites cover too little; N < ``num_points`` only for a frame almost covered by
    thin slivers). Returns ``(layers (N,), uv (N, 2))`` in random order.
    """
    picked_layers: list[np.ndarray] = []
    picked_uv: list[np.ndarray] = []
    # Quotas keyed by "on a sprite?".
    want_sprites = round(num_points * sprite_fraction) if scene.num_layers > 1 else 0
    want = {True: want_sprites, False: num_points - want_sprites}
    have = {True: 0, False: 0}
    for attempt in range(_MAX_ATTEMPTS):
        if attempt == _MAX_ATTEMPTS // 2:
            # The sprites cover too little (or left the frame): fill up with background points.
            want[False] += want[True] - have[True]
            want[True] = have[True]
        t = int(rng.integers(num_frames))
        xy = rng.uniform([0, 0], [scene.width - 1, scene.height - 1], size=(256, 2))
        distances = np.stack([scene.signed_distance(layer, xy, t) for layer in range(scene.num_layers)])
        top = scene.top_layer(xy, t)
        own = np.take_along_axis(distances, top[None], 0)[0]
        above = np.where(np.arange(scene.num_layers)[:, None] > top[None], distances, -np.inf).max(0)
        clean = (own >= margin) & (above <= -margin)
        for on_sprite in (True, False):
            sel = np.flatnonzero(clean & ((top > 0) == on_sprite))[: want[on_sprite] - have[on_sprite]]
            for layer in np.unique(top[sel]):
                chosen = sel[top[sel] == layer]
                picked_layers.append(np.full(len(chosen), layer, dtype=np.int64))
                picked_uv.append(scene.to_texture(int(layer), xy[chosen], t))
            have[on_sprite] += len(sel)
        if have[True] >= want[True] and have[False] >= want[False]:
            break
    layers = np.concatenate(picked_layers) if picked_layers else np.zeros(0, dtype=np.int64)
    uv = np.concatenate(picked_uv) if picked_uv else np.zeros((0, 2))
    order = rng.permutation(len(layers))
    return layers[order], uv[order]
