"""Flows at points (GMRW.point_flow, what tracking reads): equal to the dense read-out tracking used
to build (upsampled to the frame with aligned corners, read with the paper's sampler) for any frame
size, read-out and point (outside ones too), while computing only the rows the points need."""

from __future__ import annotations

import pytest
import torch

import gmrw.models.matching as matching
from gmrw.models import GMRW
from gmrw.tracking.flows import sample_flow

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return GMRW(feature_channels=32, num_transformer_layers=2, ffn_dim_expansion=2).eval()


def features(k: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, 32, h, w, generator=g), torch.randn(k, 32, h, w, generator=g)


@pytest.mark.parametrize(
    "method, window", [("weighted_sum", None), ("argmax", None), ("weighted_argmax", 2.0)]
)
@pytest.mark.parametrize(
    "size, cells", [((64, 96), (32, 48)), ((200, 320), (32, 48)), ((101, 157), (24, 40))]
)
def test_point_flow_equals_the_dense_read_out(net, method, window, size, cells, monkeypatch):
    height, width = size
    src, dst = features(3, *cells, seed=height)
    g = torch.Generator().manual_seed(1)
    # inside, on the far edges, and a little outside (extrapolated, as the paper's sampler does)
    xy = torch.stack(
        (torch.rand(3, 12, generator=g) * (width + 4) - 2, torch.rand(3, 12, generator=g) * (height + 4) - 2),
        -1,
    )
    xy[:, :2] = torch.tensor([[0.0, 0.0], [width - 1.0, height - 1.0]])
    dense = sample_flow(net.flow_from_features(src, dst, method, window, size), xy)
    # The rows path must not build the cell flow of the whole frame.
    real = matching.flow_from_features
    monkeypatch.setattr(matching, "flow_from_features", lambda *a: pytest.fail("dense path used"))
    points = net.point_flow(src, dst, xy, method, window, size)
    monkeypatch.setattr(matching, "flow_from_features", real)
    # float rounding of flows up to ~W px: a few 1e-7 of their size
    assert points.shape == (3, 12, 2)
    assert torch.allclose(points, dense, atol=1e-6 * width + 1e-5, rtol=0)
    # where the points touch most cells, the whole cell flow is computed once and read
    everywhere = matching.flow_at_points(src, dst, xy, size, method, window, dense_fraction=0.0)
    assert torch.allclose(everywhere, dense, atol=1e-6 * width + 1e-5, rtol=0)


def test_point_flow_at_the_cells_own_size_is_the_cell_flow(net):
    """Frames the size of the feature grid: no upsampling, a point on a cell centre reads that cell."""
    src, dst = features(1, 8, 12, seed=3)
    cell_flow = net.flow_from_features(src, dst)
    xy = torch.tensor([[[3.0, 5.0], [0.0, 0.0], [11.0, 7.0]]])
    expected = torch.stack([cell_flow[0, :, 5, 3], cell_flow[0, :, 0, 0], cell_flow[0, :, 7, 11]])
    assert torch.allclose(net.point_flow(src, dst, xy)[0], expected, atol=1e-5)
