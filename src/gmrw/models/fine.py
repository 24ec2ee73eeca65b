"""Sub-cell precision: a learned local match at 1/2 resolution after the global one at 1/4.

The global match reads each target on the 1/4-resolution grid, a cell of 4 model pixels (4.6 px
of a 256² frame processed at 224 px). This step takes each coarse target, looks at the
(2r+1)² cells of a 1/2-resolution feature map around it (computed from the backbone's ``layer1``
output, which the encoder computes anyway) and moves the target to the expectation of a softmax
over that window: a local match, trained by a local cycle walk
(:func:`gmrw.losses.fine_walk.fine_walk_loss`). Optionally (``pixel_channels`` > 0) a second level
does the same at full resolution around the first level's result, on features of a small
full-resolution convolution of the image and the upsampled ``layer1`` map.

Geometry, shared by the loss and the read-outs: the backbone's stride-2 convolutions are centred
(kernel 7 / pad 3, then kernel 3 / pad 1), so fine cell ``i`` sits at model pixel ``2 i`` and
coarse cell ``j`` at pixel ``4 j``, i.e. at fine position ``2 j``; a full-resolution pixel ``k``
is at fine position ``k / 2``. Positions below are in cells of the map they index, (x, y), and
integer positions are cell centres.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

#: The step's settings (``GMRW(fine_match={...})``) and their defaults.
FINE_MATCH_DEFAULTS: dict = {
    "channels": 32,  # fine feature channels
    "radius": 3,  # the window: (2r+1)² fine cells around the coarse target
    "weight": 1.0,  # weight of the fine walk loss in the objective
    "coarse_window": 2.0,  # training: the coarse targets are read within this many cells of the argmax
    "temperature": 0.07,  # softmax temperature of the cosine similarities (the CRW paper's value)
    "pixel_channels": 0,  # > 0: a second, full-resolution level with features of this many channels
    "pixel_radius": 2,  # its window's radius in pixels
}


class LocalMaps(NamedTuple):
    """The step's feature maps of n frames: ``half`` (n, Cf, 2h, 2w) at 1/2 resolution and ``full``
    (n, Cp, 4h, 4w) at full resolution (None without the pixel level); unit vectors."""

    half: torch.Tensor
    full: torch.Tensor | None


#: Source points per chunk of the dense read-out (bounds its (points, window, channels) temporaries).
POINT_CHUNK = 4096


def fine_match_settings(settings: Mapping | None) -> dict | None:
    """``fine_match`` constructor argument → a complete plain dict (None: the step is off).
    Raises ValueError naming an unknown key or a bad value."""
    if settings is None:
        return None
    unknown = set(settings) - set(FINE_MATCH_DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown fine_match setting(s) {sorted(unknown)}; known: {sorted(FINE_MATCH_DEFAULTS)}"
        )
    out = {**FINE_MATCH_DEFAULTS, **{k: v for k, v in dict(settings).items() if v is not None}}
    out = {
        "channels": int(out["channels"]),
        "radius": int(out["radius"]),
        "weight": float(out["weight"]),
        "coarse_window": float(out["coarse_window"]),
        "temperature": float(out["temperature"]),
        "pixel_channels": int(out["pixel_channels"]),
        "pixel_radius": int(out["pixel_radius"]),
    }
    if (
        out["channels"] < 1
        or out["radius"] < 1
        or out["pixel_channels"] < 0
        or out["pixel_radius"] < 1
        or out["weight"] < 0
        or out["coarse_window"] <= 0
        or out["temperature"] <= 0
    ):
        raise ValueError(
            "fine_match needs channels >= 1, radius >= 1, weight >= 0, coarse_window > 0, "
            f"temperature > 0, pixel_channels >= 0, pixel_radius >= 1; got {out}"
        )
    return out


class FineFeatures(nn.Module):
    """Backbone ``layer1`` map (B, 64, H/2, W/2) → fine matching features (B, channels, H/2, W/2),
    unit length along the channels.

    A 3x3 convolution for some context and a 1x1 projection; per image, like the encoder. Unit
    features and a low temperature make the local softmax peaked from the start: with the
    unnormalised projection (scores near 0, softmax near uniform over the window) the fine walk of
    ``make train`` stayed at chance (loss log 49) for its first 60 steps; normalised, a tiny run's
    walk accuracy went from 22 to 64 % in 30 steps against 3 to 13 % (``tests/test_models_fine.py``
    clips).
    """

    def __init__(self, in_channels: int = 64, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.conv2(F.relu(self.conv1(x))), dim=1)


class PixelFeatures(nn.Module):
    """The normalised image (B, 3, H, W) and the ``layer1`` map (B, 64, H/2, W/2) → full-resolution
    matching features (B, channels, H, W), unit length along the channels.

    Two 3x3 convolutions of the image (5 px of context) beside the ``layer1`` map projected to 32
    channels and upsampled (for what a 5 px patch cannot tell apart), mixed by a 1x1 projection.
    """

    def __init__(self, channels: int = 16, half_channels: int = 64, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.context = nn.Conv2d(half_channels, width, 1)
        self.mix = nn.Conv2d(2 * width, channels, 1)

    def forward(self, image: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
        local = F.relu(self.conv2(F.relu(self.conv1(image))))
        # corner-aligned: pixel k of the image reads the half map at k / 2 (to within half a pixel)
        context = F.interpolate(
            self.context(half), size=image.shape[-2:], mode="bilinear", align_corners=True
        )
        return F.normalize(self.mix(torch.cat((local, F.relu(context)), dim=1)), dim=1)


def window_offsets(radius: int, device=None) -> torch.Tensor:
    """(K, 2) integer offsets (dx, dy) of the (2r+1)² window, row-major (dy outer), K = (2r+1)²."""
    span = torch.arange(-radius, radius + 1, device=device)
    dy, dx = torch.meshgrid(span, span, indexing="ij")
    return torch.stack((dx.flatten(), dy.flatten()), dim=-1)


def grid_positions(height: int, width: int, device=None) -> torch.Tensor:
    """(height*width, 2) float32 cell positions (x, y), row-major."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    return torch.stack((xs.flatten(), ys.flatten()), dim=-1).float()


def coarse_flow_at(coarse_flow: torch.Tensor, fine_xy: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    """A flow (B, 2, h, w) in cells of a map ``factor`` times coarser than the one ``fine_xy``
    (B, P, 2) indexes, read there (bilinear, clamped to the border) → (B, P, 2) displacement in
    the finer map's cells."""
    h, w = coarse_flow.shape[-2:]
    coarse_xy = fine_xy / factor  # fine cell 2j is coarse cell j
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=fine_xy.device)
    grid = (coarse_xy * scale - 1.0).unsqueeze(1)  # (B, 1, P, 2), corner-aligned
    sampled = F.grid_sample(
        coarse_flow.float(), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return factor * sampled[:, :, 0].transpose(1, 2)


def gather_window(
    feature: torch.Tensor, centers: torch.Tensor, offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the window around each centre.

    feature (B, C, H, W); centers (B, P, 2) integer (x, y); offsets (K, 2) → features
    (B, P, K, C) and ``inside`` (B, P, K) bool (False where the cell is off the map; its
    features are those of the nearest border cell and must be masked by the caller).
    """
    b, c, h, w = feature.shape
    cells = centers.long().unsqueeze(2) + offsets.long()  # (B, P, K, 2)
    x, y = cells.unbind(-1)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    index = y.clamp(0, h - 1) * w + x.clamp(0, w - 1)
    index = index + (torch.arange(b, device=index.device) * (h * w)).view(b, 1, 1)
    flat = feature.permute(0, 2, 3, 1).reshape(b * h * w, c)
    return flat.index_select(0, index.flatten()).view(*index.shape, c), inside


def sample_features(feature: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear features (B, C, H, W) at positions xy (B, P, 2) (x, y) in cells → (B, P, C)
    (exact at integer positions; clamped to the border outside)."""
    h, w = feature.shape[-2:]
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=xy.device)
    grid = (xy.float() * scale - 1.0).unsqueeze(1)
    sampled = F.grid_sample(
        feature, grid.to(feature.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )
    return sampled[:, :, 0].transpose(1, 2)


def window_centers(target_xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Continuous targets (B, P, 2) → the nearest cells, clamped onto the map (B, P, 2) int64, so a
    target that fell off the map still has its nearest cells as candidates."""
    x = target_xy[..., 0].round().clamp(0, width - 1)
    y = target_xy[..., 1].round().clamp(0, height - 1)
    return torch.stack((x, y), dim=-1).long()


def masked_softmax(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim of ``scores`` where ``keep``; float32."""
    return F.softmax(scores.float().masked_fill(~keep, float("-inf")), dim=-1)


def fine_match_points(
    fine_src: torch.Tensor,
    fine_dst: torch.Tensor,
    source_xy: torch.Tensor | None,
    target_xy: torch.Tensor,
    radius: int,
    temperature: float,
) -> torch.Tensor:
    """The step on points: coarse targets → refined targets, batched.

    Args:
        fine_src, fine_dst: fine features (B, C, H2, W2) of the source and target frames.
        source_xy: (B, P, 2) source positions (x, y) in fine cells (bilinear features), or None for
            every cell of the source map (P = H2*W2, row-major).
        target_xy: (B, P, 2) coarse target positions in fine cells (any precision).
        radius: the window's radius r in fine cells.
        temperature: of the softmax.

    Returns:
        (B, P, 2) float32 refined targets in fine cells: the expectation of the softmax of
        ``<f_src(p), f_dst(q)> / temperature`` over the (2r+1)² cells q around ``target_xy``'s
        nearest cell (cells off the map excluded).
    """
    b, c, h, w = fine_dst.shape
    scale = 1.0 / temperature
    offsets = window_offsets(radius, target_xy.device)
    if source_xy is None:
        queries_all = fine_src.flatten(2).transpose(1, 2)  # (B, H2*W2, C)
    else:
        queries_all = sample_features(fine_src, source_xy)
    out = []
    for i in range(0, target_xy.shape[1], POINT_CHUNK):
        queries = queries_all[:, i : i + POINT_CHUNK]
        centers = window_centers(target_xy[:, i : i + POINT_CHUNK], h, w)
        keys, inside = gather_window(fine_dst, centers, offsets)
        scores = torch.einsum("bpc,bpkc->bpk", queries * scale, keys)
        probs = masked_softmax(scores, inside)
        out.append(centers.float() + probs @ offsets.float())
    return torch.cat(out, dim=1)


def fine_flow(
    fine_src: torch.Tensor,
    fine_dst: torch.Tensor,
    coarse_flow: torch.Tensor,
    radius: int,
    temperature: float,
    factor: float = 2.0,
) -> torch.Tensor:
    """The step on a dense flow: a flow (B, 2, h, w) in cells of a map ``factor`` times coarser
    than the fine maps (B, C, H2, W2) → refined flow (B, 2, H2, W2) in fine cells."""
    b, _, h2, w2 = fine_src.shape
    grid = grid_positions(h2, w2, fine_src.device).expand(b, -1, -1)
    targets = grid + coarse_flow_at(coarse_flow, grid, factor)
    refined = fine_match_points(fine_src, fine_dst, None, targets, radius, temperature)
    return (refined - grid).transpose(1, 2).reshape(b, 2, h2, w2)
