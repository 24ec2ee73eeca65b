"""The procedural training world: textured layers under camera homographies, with moving,
occluding objects, seen through an imperfect camera.

A scene (:func:`sample_world_scene`) is a background texture seen by a camera that pans, zooms,
rotates and tilts (a homography), and a few objects (textured shapes) moving over it with their
own translation, rotation and scale, occluding each other and the background. Textures come from
a :class:`TextureBank` of procedural images (:mod:`gmrw.data.scenes.textures`), never from
photographs. :func:`degrade` then applies what a real camera adds, independently per frame:
exposure and colour changes, blur, sensor noise and JPEG compression. Ground truth
(:meth:`Scene.tracks`) is exact and unaffected by the degradations.

Speeds are given per frame as fractions of the frame's shorter side, so a world rendered at
160 px and one at 256 px move alike relative to their frames.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gmrw.data.scenes.scene import Layer, Motion, Scene, Shape
from gmrw.data.scenes.textures import random_texture


class TextureBank:
    """``size`` procedural textures ``(3, side, side)`` uint8, each made on first use and kept.

    Texture ``i`` is a pure function of ``(seed, i)``, so every process (loader workers, DDP ranks)
    sees the same bank without sharing memory; making one costs ~0.1–0.2 s, so reusing a bank of
    a few hundred textures under random crops, rotations and recolourings keeps rendering cheap.
    """

    def __init__(self, size: int = 256, side: int = 320, seed: int = 0):
        if size < 1 or side < 16:
            raise ValueError(f"a texture bank needs size >= 1 and side >= 16, got {size}, {side}")
        self.size, self.side, self.seed = int(size), int(side), int(seed)
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index) % self.size
        texture = self._cache.get(index)
        if texture is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7_919, index]))
            image = random_texture(rng, self.side, self.side)
            texture = torch.from_numpy(np.round(image)).to(torch.uint8)
            self._cache[index] = texture
        return texture

    def draw(self, rng: np.random.Generator, side: int | None = None) -> torch.Tensor:
        """A random variant ``(3, s, s)`` float32 of a random bank texture: a crop of side ``side``
        (default the whole texture), flipped, with permuted (sometimes inverted) channels."""
        texture = self[int(rng.integers(self.size))]
        if side is not None and side < self.side:
            y, x = (int(v) for v in rng.integers(0, self.side - side + 1, size=2))
            texture = texture[:, y : y + side, x : x + side]
        texture = texture[torch.from_numpy(rng.permutation(3))].float()
        if rng.random() < 0.2:
            texture = 255.0 - texture
        if rng.random() < 0.5:
            texture = texture.flip(-1)
        if rng.random() < 0.5:
            texture = texture.flip(-2)
        return texture.contiguous()


@dataclass(frozen=True)
class WorldMotion:
    """Largest per-frame motions, as fractions of the frame's short side (speeds), per frame
    (zoom: log-scale; spin: degrees; tilt_rate: perspective per frame per px)."""

    camera_speed: float = 0.015
    camera_acceleration: float = 0.001
    camera_zoom: float = 0.012
    camera_spin: float = 0.8
    camera_tilt_rate: float = 4e-5
    object_speed: float = 0.02
    object_acceleration: float = 0.002
    object_zoom: float = 0.015
    object_spin: float = 3.0

    def scaled(self, factor: float) -> WorldMotion:
        values = {name: getattr(self, name) * factor for name in self.__dataclass_fields__}
        return WorldMotion(**values)


def _heading(rng: np.random.Generator, magnitude: float) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * math.pi)
    return (magnitude * math.cos(angle), magnitude * math.sin(angle))


def sample_camera(
    rng: np.random.Generator,
    height: int,
    width: int,
    texture_side: int,
    motion: WorldMotion,
    duration: float,
    log_scale_range: tuple[float, float] = (-0.15, 0.25),
) -> Motion:
    """A camera path (world px → frame px) that keeps the frame inside a ``texture_side`` square
    texture for ``duration`` frames (best effort; the renderer mirrors at the texture's edge),
    with a zoom (log of frame px per world px at t = 0) drawn from ``log_scale_range``."""
    side = min(height, width)
    speed = rng.uniform(0, 1) ** 0.7 * motion.camera_speed * side
    log_scale = rng.uniform(*log_scale_range)
    travel = speed * duration / math.exp(log_scale)  # world px covered by the frame centre
    room = max(0.0, texture_side / 2 - 0.75 * max(height, width) / math.exp(log_scale) - travel / 2)
    centre = texture_side / 2
    anchor = (centre + rng.uniform(-room, room), centre + rng.uniform(-room, room))
    velocity = _heading(rng, speed)
    # The world point at the frame centre drifts by -velocity / scale a frame: start half a path
    # ahead, so the path is centred on the texture.
    ahead = 0.5 * duration / math.exp(log_scale)
    anchor = (anchor[0] + ahead * velocity[0], anchor[1] + ahead * velocity[1])
    return Motion(
        anchor=anchor,
        center=((width - 1) / 2, (height - 1) / 2),
        velocity=velocity,
        acceleration=_heading(rng, rng.uniform(0, motion.camera_acceleration) * side),
        angle=rng.uniform(-0.3, 0.3),
        spin=math.radians(rng.uniform(-1, 1) * motion.camera_spin),
        log_scale=log_scale,
        zoom=rng.uniform(-1, 1) * motion.camera_zoom,
        tilt=(rng.uniform(-1, 1) * 8e-4 * 256 / side, rng.uniform(-1, 1) * 8e-4 * 256 / side),
        tilt_rate=(
            rng.uniform(-1, 1) * motion.camera_tilt_rate * 256 / side,
            rng.uniform(-1, 1) * motion.camera_tilt_rate * 256 / side,
        ),
    )


def sample_shape(rng: np.random.Generator, radius: float, size: int) -> Shape:
    """A random outline of about ``radius`` texture px centred in a ``size``² texture."""
    aspect = rng.uniform(0.5, 1.0)
    semi_axes = (radius, radius * aspect) if rng.random() < 0.5 else (radius * aspect, radius)
    return Shape(
        center=((size - 1) / 2, (size - 1) / 2),
        semi_axes=semi_axes,
        power=float(rng.choice([1.5, 2.0, 2.0, 3.0, 4.0, 6.0])),
        lobes=int(rng.integers(2, 7)),
        lobe_amplitude=rng.uniform(0.0, 0.25),
        lobe_phase=rng.uniform(0, 2 * math.pi),
    )


def sample_object_motion(
    rng: np.random.Generator,
    camera: Motion,
    height: int,
    width: int,
    size: int,
    motion: WorldMotion,
) -> Motion:
    """An object's path in world px: it starts somewhere in the frame at t = 0 and drifts."""
    side = min(height, width)
    scale = math.exp(camera.log_scale)  # frame px per world px
    start_frame = np.array([rng.uniform(0.1, 0.9) * (width - 1), rng.uniform(0.1, 0.9) * (height - 1), 1.0])
    start = np.linalg.solve(camera.matrix(0.0), start_frame)
    start = start[:2] / start[2]
    return Motion(
        anchor=((size - 1) / 2, (size - 1) / 2),
        center=(float(start[0]), float(start[1])),
        velocity=_heading(rng, rng.uniform(0, 1) ** 0.7 * motion.object_speed * side / scale),
        acceleration=_heading(rng, rng.uniform(0, motion.object_acceleration) * side / scale),
        angle=rng.uniform(-math.pi, math.pi),
        spin=math.radians(rng.uniform(-1, 1) * motion.object_spin),
        log_scale=0.0,
        zoom=rng.uniform(-1, 1) * motion.object_zoom,
    )


def sample_world_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    bank: TextureBank,
    motion: WorldMotion | None = None,
    num_objects: tuple[int, int] = (2, 6),
    duration: float = 16.0,
) -> Scene:
    """A random procedural scene seen in ``height × width`` frames over about ``duration`` frames."""
    motion = motion or WorldMotion()
    camera = sample_camera(rng, height, width, bank.side, motion, duration)
    layers = [Layer(bank.draw(rng), camera)]
    side = min(height, width)
    scale = math.exp(camera.log_scale)
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        radius = rng.uniform(0.08, 0.3) * side / scale  # world px
        size = min(bank.side, int(math.ceil(2.6 * radius)) + 4)
        radius = min(radius, (size - 4) / 2.6)
        texture = bank.draw(rng, size)
        layers.append(
            Layer(
                texture,
                sample_object_motion(rng, camera, height, width, size, motion),
                sample_shape(rng, radius, size),
            )
        )
    return Scene(height, width, tuple(layers))


# ------------------------------------------------------------------------------- the camera's faults


def _gaussian_blur(frame: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = frame.shape[0]
    out = F.conv2d(
        F.pad(frame[None], (radius, radius, 0, 0), mode="replicate"),
        kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1),
        groups=c,
    )
    out = F.conv2d(
        F.pad(out, (0, 0, radius, radius), mode="replicate"),
        kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1),
        groups=c,
    )
    return out[0]


def jpeg(frame: torch.Tensor, quality: int) -> torch.Tensor:
    """``(3, H, W)`` float [0, 255] through JPEG at ``quality`` and back."""
    from PIL import Image

    array = frame.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).float()


def degrade(frames: torch.Tensor, rng: np.random.Generator, strength: float = 1.0) -> torch.Tensor:
    """What a real camera adds to rendered ``frames (T, 3, H, W)`` float [0, 255], independently per
    frame: exposure / white-balance / vignetting changes, blur, noise, JPEG. ``strength`` 0 is a
    no-op; 1 is the training world's setting. Returns a new tensor."""
    if strength <= 0:
        return frames.clone()
    out = []
    _, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    for frame in frames:
        gain = 1.0 + strength * rng.uniform(-0.2, 0.2)
        white = 1.0 + strength * torch.from_numpy(rng.uniform(-0.06, 0.06, 3)).float().view(3, 1, 1)
        direction = rng.uniform(0, 2 * math.pi)
        ramp = 1.0 + strength * rng.uniform(-0.12, 0.12) * (
            xs * math.cos(direction) + ys * math.sin(direction)
        )
        frame = frame * gain * white * ramp + strength * rng.uniform(-12, 12)
        if rng.random() < 0.5 * strength:
            frame = _gaussian_blur(frame, rng.uniform(0.4, 1.4))
        if rng.random() < 0.5 * strength:
            frame = (
                frame
                + torch.from_numpy(rng.standard_normal(frame.shape)).float() * rng.uniform(1, 7) * strength
            )
        frame = frame.clamp(0, 255)
        if rng.random() < 0.5 * strength:
            frame = jpeg(frame, int(rng.integers(25, 90)))
        out.append(frame)
    return torch.stack(out)
