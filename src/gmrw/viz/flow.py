"""Optical flow as a colour image (hue = direction, saturation = magnitude)."""

from __future__ import annotations

import math

import torch


def flow_to_rgb(flow: torch.Tensor, max_magnitude: float | None = None) -> torch.Tensor:
    """flow ``(2, H, W)`` (dx, dy) pixels → ``(H, W, 3)`` uint8.

    ``max_magnitude`` fixes the saturation scale (defaults to this flow's largest magnitude), so
    several flows can be drawn on one scale.
    """
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"expected a flow of shape (2, H, W), got {tuple(flow.shape)}")
    flow = flow.detach().float().cpu()
    dx, dy = flow[0], flow[1]
    magnitude = torch.sqrt(dx**2 + dy**2)
    scale = max_magnitude if max_magnitude is not None else float(magnitude.max())
    saturation = (magnitude / max(scale, 1e-6)).clamp(0, 1)
    hue = (torch.atan2(-dy, -dx) / math.pi + 1) / 2  # [0, 1]
    # HSV → RGB with value fixed at 1.
    h6 = hue * 6
    channels = []
    for offset in (5.0, 3.0, 1.0):
        k = (offset + h6) % 6
        channels.append(1 - saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    rgb = torch.stack(channels, dim=-1)
    return (rgb * 255).round().to(torch.uint8)
