"""Edge-aware second-order smoothness follows its definition."""

from __future__ import annotations

import math

import torch

from gmrw.losses.smoothness import edge_aware_smoothness


def test_affine_flow_costs_only_the_robust_epsilon_on_flat_images():
    ys, xs = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    flow = torch.stack((0.5 * xs + 2 * ys, -xs + 3.0))[None]  # second differences vanish
    image = torch.zeros(1, 3, 10, 12)
    loss = edge_aware_smoothness(flow, image)
    assert math.isclose(loss.item(), 1e-3, rel_tol=1e-3)  # sqrt(0 + 1e-6), weights 1


def test_matches_a_direct_reading_of_the_definition():
    g = torch.Generator().manual_seed(0)
    flow = torch.randn(2, 2, 9, 11, generator=g, dtype=torch.float64)
    # small contrasts so the edge weights exp(-mean (150 dI)^2) span (0, 1)
    image = torch.rand(2, 3, 9, 11, generator=g, dtype=torch.float64) * 0.02 - 1
    k = 150.0
    wx = torch.exp(-((k * (image[..., 2:] - image[..., :-2])) ** 2).mean(1, keepdim=True))
    wy = torch.exp(-((k * (image[..., 2:, :] - image[..., :-2, :])) ** 2).mean(1, keepdim=True))
    fx = flow.diff(dim=-1).diff(dim=-1)
    fy = flow.diff(dim=-2).diff(dim=-2)
    expected = ((wx * (fx**2 + 1e-6).sqrt()).mean() + (wy * (fy**2 + 1e-6).sqrt()).mean()) / 2
    assert 0.05 < wx.mean() < 0.95
    loss = edge_aware_smoothness(flow, image)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=0)


def test_strong_edges_switch_the_penalty_off():
    flow = torch.zeros(1, 2, 6, 6)
    flow[:, :, :, 3:] = 5.0  # a jump in x: large second differences around column 3
    image = torch.zeros(1, 3, 6, 6)
    flat = edge_aware_smoothness(flow, image)
    image[:, :, :, 3:] = 1.0  # an image edge at the same place
    edged = edge_aware_smoothness(flow, image)
    assert edged < flat / 10
