"""GMRW: a global-matching transformer trained with a contrastive random walk.

Images are float in [0, 255]; the model divides by 255 and applies the ImageNet mean/std
itself. Matching runs on the backbone's 1/4-resolution map: an H x W image gives h x w =
H/4 x W/4 cells, N = h*w, and transitions are (B, N, N) row-stochastic matrices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gmrw.choices import check_flow_method
from gmrw.models.backbone import CNNEncoder
from gmrw.models.fine import (
    FineFeatures,
    LocalMaps,
    PixelFeatures,
    fine_flow,
    fine_match_points,
    fine_match_settings,
)
from gmrw.models.matching import flow_at_points, flow_from_features, resize_flow, transition_from_features
from gmrw.models.position import add_window_position
from gmrw.models.transformer import FeatureTransformer

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class Walk(NamedTuple):
    """The two hops of a walk: ``first`` (B, N, N) start → middle, ``second`` (B, N, N) middle →
    end; ``cells`` (h, w), the feature grid whose N = h*w cells (row-major) the rows index."""

    first: torch.Tensor
    second: torch.Tensor
    cells: tuple[int, int]


#: The fine-match step's maps of a walk's start, middle and end frames.
FineMaps = tuple[LocalMaps, LocalMaps, LocalMaps]


def _pad_to(feature: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, C, H', W') → (n, C, height, width), replicating the last row/column: at sizes that are not
    multiples of 4 the 1/2 and full maps are a cell short of 2x / 4x the coarse grid."""
    if feature.shape[-2:] == (height, width):
        return feature
    return F.pad(feature, (0, width - feature.shape[-1], 0, height - feature.shape[-2]), mode="replicate")


class GMRW(nn.Module):
    """CNN backbone + sine position code + feature transformer + global softmax matching.

    Parameter names equal the paper's (``backbone.*``, ``transformer.layers.N.*``), so its
    state dicts load strictly. The network has no loss: :func:`gmrw.losses.walk_loss` reads
    :meth:`walk_transitions`. Some arguments configure that objective and are kept here because
    checkpoints carry them with the architecture: ``flow_method``/``window`` (with
    "weighted_argmax" the walk's transitions are windowed around each row's argmax),
    ``smoothness_loss`` and ``smoothness_edge_constant``.

    ``fine_match`` (None: off, the paper's model) turns on the learned sub-cell step of
    :mod:`gmrw.models.fine`: a dict of :data:`~gmrw.models.fine.FINE_MATCH_DEFAULTS` keys. Then
    :meth:`encode` carries the 1/2-resolution fine map (and the full-resolution one, with
    ``pixel_channels``) in extra channels (``pixel_unshuffle``: the output stays one
    (n, C + 4·Cf [+ 16·Cp], h, w) tensor), :meth:`refine` transforms the first C channels and passes
    the rest through, and :meth:`flow_from_features` refines every coarse match locally. Setting
    :attr:`fine_match_enabled` False reads coarse matches only (an ablation).
    """

    def __init__(
        self,
        feature_channels: int = 128,
        num_scales: int = 2,
        num_head: int = 1,
        attention_type: str = "swin",
        ffn_dim_expansion: int = 4,
        num_transformer_layers: int = 6,
        attn_splits: int = 2,
        temperature: float | None = None,
        flow_method: str = "weighted_sum",
        window: float | None = None,
        smoothness_loss: bool = True,
        smoothness_edge_constant: float = 150.0,
        activation_checkpointing: bool = False,
        pixel_divisor: float = 255.0,
        fine_match: Mapping | None = None,
    ) -> None:
        super().__init__()
        check_flow_method(flow_method, window)
        self.feature_channels = feature_channels
        self.num_scales = num_scales
        self.attn_splits = attn_splits
        self.temperature = temperature or None  # 0 means the default sqrt(C)
        self.flow_method = flow_method
        self.window = window
        self.smoothness_loss = smoothness_loss
        self.smoothness_edge_constant = smoothness_edge_constant
        if not pixel_divisor > 0:
            raise ValueError(f"pixel_divisor must be positive, got {pixel_divisor!r}")
        self.pixel_divisor = float(pixel_divisor)
        self.backbone = CNNEncoder(feature_channels, num_scales)
        self.transformer = FeatureTransformer(
            num_transformer_layers,
            feature_channels,
            num_head,
            attention_type,
            ffn_dim_expansion,
            activation_checkpointing,
        )
        # How this model tracks best (gmrw.track's defaults for it; see gmrw.tracking.options).
        # Not a weight: load_model fills it from the checkpoint, the training module from its config.
        self.tracking_defaults: dict = {}
        self.fine_match = fine_match_settings(fine_match)
        # Only with the step on, so the paper's state dicts (no such keys) load strictly.
        self.fine_features = FineFeatures(64, self.fine_match["channels"]) if self.fine_match else None
        pixel_channels = self.fine_match["pixel_channels"] if self.fine_match else 0
        self.pixel_features = PixelFeatures(pixel_channels) if pixel_channels else None
        self.fine_match_enabled = True
        self.register_buffer("pixel_mean", torch.tensor(_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(_STD).view(1, 3, 1, 1), False)

    # ---- features -------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) in [0, 255] → ImageNet-normalised float32: ``(x / pixel_divisor - mean) / std``.

        ``pixel_divisor`` is 255 (what the paper's training saw). The paper's TAP-Vid script fed
        0-255 frames without dividing (its ``norm=False``); ``pixel_divisor=1`` reproduces that
        evaluation exactly (the eval presets do), the backbone's instance norm absorbing most of it.
        """
        # same operation order as the paper (divide, then standardise) for bitwise-close parity
        return (images.float() / self.pixel_divisor - self.pixel_mean) / self.pixel_std

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(n,3,H,W) [0,255] → (n,C,H/4,W/4) backbone features with the window position code
        (with the fine-match step on: (n, C + 4·Cf [+ 16·Cp], H/4, W/4), its maps in the extra channels).

        Per-image (instance norm), so frames shared by several pairs can be encoded once.
        """
        if self.fine_features is None:
            return self.encode_coarse(images)
        coarse, maps = self.encode_parts(images)
        parts = [coarse, F.pixel_unshuffle(maps.half, 2)]
        if maps.full is not None:
            parts.append(F.pixel_unshuffle(maps.full, 4))
        return torch.cat(parts, dim=1)

    def encode_coarse(self, images: torch.Tensor) -> torch.Tensor:
        """(n,3,H,W) [0,255] → (n,C,H/4,W/4) backbone features with the window position code, without
        the fine-match step's maps (what :meth:`refine` transforms)."""
        feature = self.backbone(self.normalize(images))[0]
        return add_window_position(feature, self.attn_splits)

    def encode_fine(self, images: torch.Tensor) -> LocalMaps:
        """(n,3,H,W) [0,255] → the fine-match step's maps alone, (n,Cf,H/2,W/2) and (n,Cp,H,W) (or
        None): the backbone's first stage and the step's convolutions, a fraction of :meth:`encode`.

        For tracking with the step's maps at another size than the global match's
        (``fine_size``: :meth:`point_flow`'s ``maps``). Raises ValueError without the step.
        """
        if self.fine_features is None:
            raise ValueError("this model has no fine-match step (model.net.fine_match is null)")
        normalized = self.normalize(images)
        half = self.backbone.half(normalized)
        full = self.pixel_features(normalized, half) if self.pixel_features is not None else None
        return LocalMaps(self.fine_features(half), full)

    def encode_parts(self, images: torch.Tensor) -> tuple[torch.Tensor, LocalMaps | None]:
        """(n,3,H,W) [0,255] → coarse features (n,C,h,w) as :meth:`encode`, and the fine-match
        step's maps (None with the step off)."""
        if self.fine_features is None:
            return self.encode(images), None
        normalized = self.normalize(images)
        coarse, half = self.backbone.forward_with_half(normalized)
        coarse = add_window_position(coarse, self.attn_splits)
        h, w = coarse.shape[-2:]
        fine = _pad_to(self.fine_features(half), 2 * h, 2 * w)
        full = None
        if self.pixel_features is not None:
            full = _pad_to(self.pixel_features(normalized, half), 4 * h, 4 * w)
        return coarse, LocalMaps(fine, full)

    def split_features(self, feature: torch.Tensor) -> tuple[torch.Tensor, LocalMaps | None]:
        """:meth:`encode`/:meth:`refine` output (n, C[+4·Cf[+16·Cp]], h, w) → the coarse features
        (n,C,h,w) and the step's maps, or None (step off, or features without them)."""
        c = self.feature_channels
        if self.fine_features is None or feature.shape[1] == c:
            return feature, None
        # channels-last, the layout of the transformer's output: the matching kernels then run on
        # the same memory layout as without the step, and give bit-identical matches
        coarse = feature[:, :c].contiguous(memory_format=torch.channels_last)
        cf = 4 * self.fine_match["channels"]
        fine = F.pixel_shuffle(feature[:, c : c + cf], 2)
        full = F.pixel_shuffle(feature[:, c + cf :], 4) if self.pixel_features is not None else None
        return coarse, LocalMaps(fine, full)

    def refine(
        self, feature_src: torch.Tensor, feature_dst: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded pairs (B,C,h,w) x2 → transformer-refined (B,C,h,w) x2 (depends on the pair).
        With the fine-match step, the channels after the first C (the fine map) pass through."""
        c = self.feature_channels
        if self.fine_features is None or feature_src.shape[1] == c:
            return self.transformer(feature_src, feature_dst, self.attn_splits)
        src, dst = self.transformer(
            feature_src[:, :c].contiguous(), feature_dst[:, :c].contiguous(), self.attn_splits
        )
        return torch.cat((src, feature_src[:, c:]), dim=1), torch.cat((dst, feature_dst[:, c:]), dim=1)

    def pair_features(self, src: torch.Tensor, dst: torch.Tensor):
        """(B,3,H,W) x2 [0,255] → refined features (B,C,h,w) x2 (as :meth:`refine`); one
        backbone call for both."""
        encoded = self.encode(torch.cat((src, dst), dim=0))
        return self.refine(*encoded.chunk(2, dim=0))

    # ---- matching -------------------------------------------------------------------------
    def transition(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) x2 [0,255] → (B, h*w, h*w): row i is the distribution of source cell i
        (row-major) over all target cells; rows sum to 1. No window is applied."""
        feature_src, feature_dst = self.pair_features(src, dst)
        return transition_from_features(
            self.split_features(feature_src)[0], self.split_features(feature_dst)[0], self.temperature
        )

    def flow(
        self,
        src: torch.Tensor,
        dst: torch.Tensor,
        method: str = "weighted_sum",
        window: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """(B,3,H,W) x2 [0,255] → (B,2,H',W') flow (dx, dy) in pixels of ``size`` (default (H,W)).

        method: "weighted_sum" (expected target position), "argmax", or "weighted_argmax"
        (expectation over cells strictly within ``window`` feature cells of the argmax).
        Any number of pairs can be batched; memory stays O(N·C) / O(chunk·N).
        """
        feature_src, feature_dst = self.pair_features(src, dst)
        return self.flow_from_features(
            feature_src, feature_dst, method, window, size or tuple(src.shape[-2:])
        )

    def flow_from_features(
        self,
        feature_src: torch.Tensor,
        feature_dst: torch.Tensor,
        method: str = "weighted_sum",
        window: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Refined features (B,C,h,w) x2 → (B,2,H',W') flow; ``size`` None keeps the grid's cells
        ((h, w); with the fine-match step, the cells of its finest map: (2h, 2w) or (4h, 4w)).

        ``method``/``window`` read the global match; with the fine-match step on (features from
        :meth:`encode` carrying the fine map, :attr:`fine_match_enabled`) each match is then
        moved to the expectation of the local softmax around it (:func:`gmrw.models.fine.fine_flow`).
        """
        coarse_src, maps_src = self.split_features(feature_src)
        coarse_dst, maps_dst = self.split_features(feature_dst)
        flow = flow_from_features(coarse_src, coarse_dst, method, window, self.temperature)
        if maps_src is not None and maps_dst is not None and self.fine_match_enabled:
            settings = self.fine_match
            flow = fine_flow(maps_src.half, maps_dst.half, flow, settings["radius"], settings["temperature"])
            if maps_src.full is not None:
                flow = fine_flow(
                    maps_src.full, maps_dst.full, flow, settings["pixel_radius"], settings["temperature"]
                )
        return resize_flow(flow, size) if size is not None else flow

    def point_flow(
        self,
        feature_src: torch.Tensor,
        feature_dst: torch.Tensor,
        xy: torch.Tensor,
        method: str = "weighted_sum",
        window: float | None = None,
        size: tuple[int, int] | None = None,
        maps: tuple[LocalMaps, LocalMaps] | None = None,
    ) -> torch.Tensor:
        """Refined features (K,C,h,w) x2, points ``xy`` (K,N,2) (x, y) in pixels of frames of
        ``size`` (default (h, w) cells) → (K,N,2) flow (dx, dy) in those pixels at the points.

        What tracking reads: equal to float rounding to sampling :meth:`flow_from_features` at
        ``size`` with the paper's bilinear sampler, computing only the transition rows of the cells
        the samples touch (:func:`gmrw.models.matching.flow_at_points`). With the fine-match step on
        (features carrying its maps, :attr:`fine_match_enabled`), each point's coarse match
        ``xy + flow`` is then refined by :meth:`fine_match_points`, matching the point itself (its
        bilinear fine feature) rather than interpolating refined cell flows. ``maps``: the step's
        maps of the source and target frames (K each, :meth:`encode_fine`) to use instead of those
        the features carry, e.g. computed from larger frames than the global match's.
        """
        size = size or tuple(feature_src.shape[-2:])
        coarse_src, maps_src = self.split_features(feature_src)
        coarse_dst, maps_dst = self.split_features(feature_dst)
        flow = flow_at_points(coarse_src, coarse_dst, xy, size, method, window, self.temperature)
        if maps is not None:
            maps_src, maps_dst = maps
        if maps_src is None or maps_dst is None or not self.fine_match_enabled:
            return flow
        xy = xy.float()
        return self.fine_match_points(feature_src, feature_dst, xy, xy + flow, size, maps) - xy

    def fine_match_points(
        self,
        feature_src: torch.Tensor,
        feature_dst: torch.Tensor,
        source_xy: torch.Tensor,
        target_xy: torch.Tensor,
        size: tuple[int, int],
        maps: tuple[LocalMaps, LocalMaps] | None = None,
    ) -> torch.Tensor:
        """The fine-match step on points, for read-outs that match query points only.

        feature_src/dst: :meth:`refine` outputs (B, C + 4·Cf, h, w) of one pair each; source_xy
        (B, P, 2): the points (x, y) in pixels of ``size`` (H, W), the frame the model input was
        resized from (corner-aligned, as the tracker resizes); target_xy (B, P, 2): their coarse
        matches in the same pixels. Returns the refined matches (B, P, 2) in those pixels; the
        targets unchanged when the step is off or disabled. ``maps``: as :meth:`point_flow`'s (the
        step's maps at any size; their frames resized from ``size`` as the features' were).
        """
        if maps is None:
            maps_src = self.split_features(feature_src)[1]
            maps_dst = self.split_features(feature_dst)[1]
        else:
            maps_src, maps_dst = maps
        if maps_src is None or maps_dst is None or not self.fine_match_enabled:
            return target_xy
        settings = self.fine_match
        height, width = size
        h2, w2 = maps_src.half.shape[-2:]
        # frame pixel → model pixel (the corner-aligned resize to 2·w2 x 2·h2, the frames the maps
        # were computed from) → fine cell (model px / 2)
        to_model = torch.tensor(
            [(2 * w2 - 1) / max(width - 1, 1), (2 * h2 - 1) / max(height - 1, 1)], device=target_xy.device
        )
        source = source_xy.float() * to_model
        refined = 2 * fine_match_points(
            maps_src.half,
            maps_dst.half,
            source / 2,
            target_xy.float() * to_model / 2,
            settings["radius"],
            settings["temperature"],
        )
        if maps_src.full is not None:
            refined = fine_match_points(
                maps_src.full,
                maps_dst.full,
                source,
                refined,
                settings["pixel_radius"],
                settings["temperature"],
            )
        return refined / to_model

    # ---- the walk ---------------------------------------------------------------------------
    def walk_transitions(self, start: torch.Tensor, middle: torch.Tensor, end: torch.Tensor) -> Walk:
        """(B,3,H,W) x3 in [0,255] → the two hops of the walk start → middle → end (see
        :meth:`walk_with_fine`, which also gives the fine maps)."""
        return self.walk_with_fine(start, middle, end)[0]

    def walk_with_fine(
        self, start: torch.Tensor, middle: torch.Tensor, end: torch.Tensor
    ) -> tuple[Walk, FineMaps | None]:
        """(B,3,H,W) x3 in [0,255] → the two hops of the walk start → middle → end, what the
        training objective (:func:`gmrw.losses.walk_loss`) reads, and with the fine-match step on
        the three frames' fine maps (:data:`FineMaps`; else None), what its fine walk reads.

        Each hop is (B, h*w, h*w) row-stochastic over the target's cells; with ``flow_method``
        "weighted_argmax" each row is windowed around its argmax, as the paper trained.
        """
        b = start.shape[0]
        # The middle frame is in both pairs; instance norm is per image, so one backbone pass per frame.
        coarse, maps = self.encode_parts(torch.cat((start, middle, end), dim=0))
        e1, e2, e3 = coarse.chunk(3, dim=0)
        src, dst = self.refine(torch.cat((e1, e2)), torch.cat((e2, e3)))
        window = self.window if self.flow_method == "weighted_argmax" else None
        # One transition per hop rather than slices of one (2B, N, N) tensor: a slice's gradient
        # is a zero-filled copy of the whole tensor, 128 MiB per hop at 256x256.
        first = transition_from_features(src[:b], dst[:b], self.temperature, window)
        second = transition_from_features(src[b:], dst[b:], self.temperature, window)
        fine_maps = None
        if maps is not None:
            halves = maps.half.chunk(3, dim=0)
            fulls = maps.full.chunk(3, dim=0) if maps.full is not None else (None,) * 3
            fine_maps = tuple(LocalMaps(half, full) for half, full in zip(halves, fulls))
        return Walk(first, second, (int(src.shape[-2]), int(src.shape[-1]))), fine_maps
