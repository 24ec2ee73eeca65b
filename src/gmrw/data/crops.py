"""The anti-shortcut crop pipeline shared by every training datamodule.

A training sample is a pair of frames ``(f1, f2)``. It becomes the 4-frame cycle clip
``[f1, f2, f2', f1']``: both frames are first brought to ``img_size1`` (resize so the frame
covers it, then a random crop), then two independent random-resized crops to ``img_size2``
are taken, the *forward* crop for ``f1, f2`` and the *backward* crop for the time-reversed
pair ``f2', f1'``. The walk f1 → f2 → f1' can only return home if the model matches content,
not absolute image position: that is the point of the second crop.

``affine_b2f`` (2, 3) is the top two rows of ``N_backward @ inverse(N_forward)`` where ``N_*``
maps normalised, corner-aligned ``[-1, 1]`` coordinates of the ``img_size1`` frame to those of
the crop. Despite its (reference) name it takes a position in the forward crop to the matching
position in the backward crop, which is what ``affine_grid`` needs to build the walk's targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.geometry.conversions import normalize_homography

from gmrw.choices import check_choice
from gmrw.data.sizes import image_size

# Scale range of the second crop and how far its aspect ratio may stray from img_size2's,
# as in the paper's data-augmentation settings.
AUG_SETTINGS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "setting0": ((1.0, 1.0), (1.0, 1.0)),
    "setting1": ((0.08, 1.0), (0.7, 1.3)),
    "setting2": ((0.3, 1.0), (0.7, 1.3)),
    "setting3": ((0.5, 1.0), (0.7, 1.3)),
    "setting4": ((0.7, 0.7), (1.0, 1.0)),
}


@dataclass(frozen=True)
class CycleClip:
    """frames ``(4, 3, H2, W2)`` float in [0, 255] ordered ``[f1, f2, f2', f1']``;
    affine_b2f ``(2, 3)`` float32 (see module docstring)."""

    frames: torch.Tensor
    affine_b2f: torch.Tensor

    def sample(self, index: int) -> dict[str, torch.Tensor]:
        """The training sample of docs/CONTRACTS.md: ``frames`` float32, ``affine_b2f``, and
        ``index`` (int64), the dataset index it was made for."""
        return {
            "frames": self.frames.float(),
            "affine_b2f": self.affine_b2f,
            "index": torch.tensor(index, dtype=torch.int64),
        }


class CycleCropper:
    """Turns a frame pair into a cycle clip and its crop affine.

    Args:
        img_size1: size of the first resize/crop, (H, W) or int (640 in the paper).
        img_size2: size of the two random-resized crops (512 in the paper).
        setting: one of :data:`AUG_SETTINGS`.
    """

    def __init__(self, img_size1, img_size2, setting: str = "setting2"):
        check_choice(setting, AUG_SETTINGS, "augmentation setting")
        self.size1 = image_size(img_size1)
        self.size2 = image_size(img_size2)
        self.setting = setting
        scale, ratio_factor = AUG_SETTINGS[setting]
        # kornia's ratio is width / height.
        aspect = self.size2[1] / self.size2[0]
        self._first_crop = K.RandomCrop(self.size1, same_on_batch=True)
        self._second_crop = K.RandomResizedCrop(
            self.size2,
            scale=scale,
            ratio=(aspect * ratio_factor[0], aspect * ratio_factor[1]),
            same_on_batch=True,
        )

    def _cover_size1(self, pair: torch.Tensor) -> torch.Tensor:
        """Resize ``(2, 3, H, W)`` so that it covers img_size1 (aspect kept)."""
        h, w = pair.shape[-2:]
        scale = max(self.size1[0] / h, self.size1[1] / w)
        new_hw = (
            max(self.size1[0], math.ceil(h * scale - 1e-6)),
            max(self.size1[1], math.ceil(w * scale - 1e-6)),
        )
        if new_hw == (h, w):
            return pair
        return F.interpolate(pair, size=new_hw, mode="bilinear", align_corners=False, antialias=scale < 1)

    def __call__(self, pair: torch.Tensor, generator_seed: int | None = None) -> CycleClip:
        """pair ``(2, 3, H, W)`` float in [0, 255] → :class:`CycleClip`.

        With ``generator_seed`` the crops are a pure function of the seed (the global RNG is
        forked, not consumed), so a sample can be reproduced from its index, which exact resume needs.
        """
        if pair.ndim != 4 or pair.shape[:2] != (2, 3):
            raise ValueError(f"expected a frame pair of shape (2, 3, H, W), got {tuple(pair.shape)}")
        pair = pair.float()
        with torch.random.fork_rng(devices=[], enabled=generator_seed is not None):
            if generator_seed is not None:
                torch.manual_seed(generator_seed)
            pair = self._first_crop(self._cover_size1(pair))
            forward = self._second_crop(pair)
            m_forward = self._second_crop.transform_matrix[0]
            backward = self._second_crop(pair.flip(0))
            m_backward = self._second_crop.transform_matrix[0]
        n_forward = normalize_homography(m_forward[None], self.size1, self.size2)[0]
        n_backward = normalize_homography(m_backward[None], self.size1, self.size2)[0]
        affine_b2f = (n_backward @ torch.linalg.inv(n_forward))[:2].float()
        frames = torch.cat([forward, backward], dim=0).clamp_(0.0, 255.0)
        return CycleClip(frames=frames, affine_b2f=affine_b2f)
