"""Edge-aware second-order smoothness of flow fields (the paper's regulariser).

Edge weights come from image gradients taken at stride 2 (so they line up with second
differences of the flow, which span three pixels): ``exp(-mean_c (k·∇I)²)``. The penalty is a
robust L1, ``sqrt(x² + 1e-6)``, of the flow's second differences along x and along y.
"""

from __future__ import annotations

import torch


def edge_aware_smoothness(
    flow: torch.Tensor, image: torch.Tensor, edge_constant: float = 150.0
) -> torch.Tensor:
    """flow (B,2,H,W) pixels; image (B,3,H,W) in [-1, 1] → 0-d loss, the mean of the x and y terms."""
    if flow.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"flow {tuple(flow.shape)} and image {tuple(image.shape)} sizes differ")
    image = image.float()
    img_gx = image[..., :, 2:] - image[..., :, :-2]  # (B,3,H,W-2)
    img_gy = image[..., 2:, :] - image[..., :-2, :]  # (B,3,H-2,W)
    weight_x = torch.exp(-(edge_constant * img_gx).square().mean(dim=1, keepdim=True))
    weight_y = torch.exp(-(edge_constant * img_gy).square().mean(dim=1, keepdim=True))
    flow_gxx = flow[..., :, 2:] - 2 * flow[..., :, 1:-1] + flow[..., :, :-2]
    flow_gyy = flow[..., 2:, :] - 2 * flow[..., 1:-1, :] + flow[..., :-2, :]
    term_x = (weight_x * torch.sqrt(flow_gxx.square() + 1e-6)).mean()
    term_y = (weight_y * torch.sqrt(flow_gyy.square() + 1e-6)).mean()
    return (term_x + term_y) / 2.0
