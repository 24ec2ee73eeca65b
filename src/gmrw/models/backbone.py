"""GMFlow-style convolutional encoder (instance norm, multi-scale output).

Parameter names follow the paper's checkpoints (``backbone.layer1.0.conv1.weight``, ...), which
is why the attribute names below look the way they do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    """Two 3x3 convs with instance norm and a (possibly strided) 1x1 shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(planes)
        self.norm2 = nn.InstanceNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            # index 0 of the Sequential holds the conv: checkpoints call it ``downsample.0``
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride), nn.InstanceNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class MultiScaleConv(nn.Module):
    """One 3x3 kernel applied at several strides (shared weight, no bias)."""

    def __init__(self, channels: int, strides: tuple[int, ...]) -> None:
        super().__init__()
        self.strides = strides
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor, branch: int | None = None) -> list[torch.Tensor]:
        """x (B,C,H,W) → list of (B,C,H/s,W/s), highest resolution first; ``branch`` picks one."""
        strides = self.strides if branch is None else (self.strides[branch],)
        return [F.conv2d(x, self.weight, None, s, 1) for s in strides]


class CNNEncoder(nn.Module):
    """Image (B,3,H,W), normalised → features at 1/4 (and 1/8, ...) resolution, C channels.

    With ``num_scales >= 2`` the trunk stays at 1/4 and a shared-weight conv produces the
    scales 1/4, 1/8, ...; only the 1/4 map is used for matching, so :meth:`forward` computes
    just that one unless ``all_scales=True``.
    """

    def __init__(self, output_dim: int = 128, num_output_scales: int = 2) -> None:
        super().__init__()
        if num_output_scales < 2:
            raise ValueError("GMRW matches on the 1/4-resolution map, which needs num_scales >= 2")
        self.num_branch = num_output_scales
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)  # 1/2
        self.norm1 = nn.InstanceNorm2d(64)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64), ResidualBlock(64, 64))  # 1/2
        self.layer2 = nn.Sequential(ResidualBlock(64, 96, 2), ResidualBlock(96, 96))  # 1/4
        self.layer3 = nn.Sequential(ResidualBlock(96, 128), ResidualBlock(128, 128))  # 1/4
        self.conv2 = nn.Conv2d(128, output_dim, 1)
        self.trident_conv = MultiScaleConv(output_dim, tuple(2**i for i in range(num_output_scales)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, all_scales: bool = False) -> list[torch.Tensor]:
        """x (B,3,H,W) → [(B,C,H/4,W/4)] or, with ``all_scales``, every scale high to low."""
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.conv2(self.layer3(self.layer2(self.layer1(x))))
        return self.trident_conv(x, branch=None if all_scales else 0)

    def half(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,H,W) → ``layer1``'s (B,64,H/2,W/2) map alone: the trunk's first stage, all the
        fine-match step reads (every norm in it is per image, so it does not depend on the rest)."""
        return self.layer1(F.relu(self.norm1(self.conv1(x))))

    def forward_with_half(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,3,H,W) → the (B,C,H/4,W/4) map of :meth:`forward` and ``layer1``'s (B,64,H/2,W/2)
        map on the way (the fine-match step's input); the same operations as :meth:`forward`."""
        half = self.half(x)
        x = self.conv2(self.layer3(self.layer2(half)))
        return self.trident_conv(x, branch=0)[0], half
