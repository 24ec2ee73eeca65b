"""GMRW: a global-matching transformer trained with a contrastive random walk.

Images are float in [0, 255]; the model divides by 255 and applies the ImageNet mean/std
itself. Matching runs on the backbone's 1/4-resolution map: an H x W image gives h x w =
H/4 x W/4 cells, N = h*w, and transitions are (B, N, N) row-stochastic matrices.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from gmrw.choices import check_flow_method
from gmrw.models.backbone import CNNEncoder
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


class GMRW(nn.Module):
    """CNN backbone + sine position code + feature transformer + global softmax matching.

    Parameter names equal the paper's (``backbone.*``, ``transformer.layers.N.*``), so its
    state dicts load strictly. The network has no loss: :func:`gmrw.losses.walk_loss` reads
    :meth:`walk_transitions`. Some arguments configure that objective and are kept here because
    checkpoints carry them with the architecture: ``flow_method``/``window`` (with
    "weighted_argmax" the walk's transitions are windowed around each row's argmax),
    ``smoothness_loss`` and ``smoothness_edge_constant``.
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
        """(n,3,H,W) [0,255] → (n,C,H/4,W/4) backbone features with the window position code.

        Per-image (instance norm), so frames shared by several pairs can be encoded once.
        """
        feature = self.backbone(self.normalize(images))[0]
        return add_window_position(feature, self.attn_splits)

    def refine(
        self, feature_src: torch.Tensor, feature_dst: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded pairs (B,C,h,w) x2 → transformer-refined (B,C,h,w) x2 (depends on the pair)."""
        return self.transformer(feature_src, feature_dst, self.attn_splits)

    def pair_features(self, src: torch.Tensor, dst: torch.Tensor):
        """(B,3,H,W) x2 [0,255] → refined features (B,C,h,w) x2; one backbone call for both."""
        encoded = self.encode(torch.cat((src, dst), dim=0))
        return self.refine(*encoded.chunk(2, dim=0))

    # ---- matching -------------------------------------------------------------------------
    def transition(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) x2 [0,255] → (B, h*w, h*w): row i is the distribution of source cell i
        (row-major) over all target cells; rows sum to 1. No window is applied."""
        return transition_from_features(*self.pair_features(src, dst), self.temperature)

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
        """Refined features (B,C,h,w) x2 → (B,2,H',W') flow; ``size`` None keeps (h, w) cells."""
        flow = flow_from_features(feature_src, feature_dst, method, window, self.temperature)
        return resize_flow(flow, size) if size is not None else flow

    def point_flow(
        self,
        feature_src: torch.Tensor,
        feature_dst: torch.Tensor,
        xy: torch.Tensor,
        method: str = "weighted_sum",
        window: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Refined features (K,C,h,w) x2, points ``xy`` (K,N,2) (x, y) in pixels of frames of
        ``size`` (default (h, w) cells) → (K,N,2) flow (dx, dy) in those pixels at the points.

        What tracking reads: equal to float rounding to sampling :meth:`flow_from_features` at
        ``size`` with the paper's bilinear sampler, computing only the transition rows of the cells
        the samples touch (:func:`gmrw.models.matching.flow_at_points`).
        """
        size = size or tuple(feature_src.shape[-2:])
        return flow_at_points(feature_src, feature_dst, xy, size, method, window, self.temperature)

    # ---- the walk ---------------------------------------------------------------------------
    def walk_transitions(self, start: torch.Tensor, middle: torch.Tensor, end: torch.Tensor) -> Walk:
        """(B,3,H,W) x3 in [0,255] → the two hops of the walk start → middle → end, what the
        training objective (:func:`gmrw.losses.walk_loss`) reads.

        Each hop is (B, h*w, h*w) row-stochastic over the target's cells; with ``flow_method``
        "weighted_argmax" each row is windowed around its argmax, as the paper trained.
        """
        b = start.shape[0]
        # The middle frame is in both pairs; instance norm is per image, so one backbone pass per frame.
        e1, e2, e3 = self.encode(torch.cat((start, middle, end), dim=0)).chunk(3, dim=0)
        src, dst = self.refine(torch.cat((e1, e2)), torch.cat((e2, e3)))
        window = self.window if self.flow_method == "weighted_argmax" else None
        # One transition per hop rather than slices of one (2B, N, N) tensor: a slice's gradient
        # is a zero-filled copy of the whole tensor, 128 MiB per hop at 256x256.
        first = transition_from_features(src[:b], dst[:b], self.temperature, window)
        second = transition_from_features(src[b:], dst[b:], self.temperature, window)
        return Walk(first, second, (int(src.shape[-2]), int(src.shape[-1])))
