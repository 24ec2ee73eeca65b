"""Layered scenes under projective motion, rendered with exact ground truth.

* :mod:`~gmrw.data.scenes.scene`: the engine (homography paths, layers with analytic outlines,
  rendering, exact tracks and occlusion);
* :mod:`~gmrw.data.scenes.textures`: procedural textures with natural-image statistics;
* :mod:`~gmrw.data.scenes.world`: the procedural training world (texture bank, camera and
  object motions, camera degradations).
"""

from gmrw.data.scenes.scene import (
    Layer,
    Motion,
    Scene,
    Shape,
    apply_homography,
    render,
    sample_points,
    to_uint8,
)
from gmrw.data.scenes.world import TextureBank, WorldMotion, degrade, sample_world_scene

__all__ = [
    "Layer",
    "Motion",
    "Scene",
    "Shape",
    "TextureBank",
    "WorldMotion",
    "apply_homography",
    "degrade",
    "render",
    "sample_points",
    "sample_world_scene",
    "to_uint8",
]
