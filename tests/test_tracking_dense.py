"""Dense tracks: the compact npz (float16 tracks, visibility packed 8 frames a byte) reads back as
written, colours follow starting positions, and dots land where the tracks say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmrw.tracking import load_tracks, save_dense, save_tracks
from gmrw.tracking.files import dense_grid
from gmrw.tracking.inputs import dense_queries
from gmrw.viz.tracks import draw_dots, start_colors

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_compact_npz_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    queries = dense_queries(30, 41, 1, frame=2)
    n, t = len(queries), 11  # 11 frames: the last byte of each row is partly padding
    assert n == 30 * 41 and dense_grid(30, 41, 1) == (30, 41)
    tracks = rng.uniform(-5, 300, (n, t, 2)).astype(np.float32)
    occluded = rng.random((n, t)) < 0.3
    path = save_dense(tmp_path / "d.npz", tracks, occluded, queries, 1, (30, 41), fps=12)
    with np.load(path) as raw:
        assert raw["tracks"].dtype == np.float16 and raw["visible_bits"].shape == (n, 2)
        assert raw["grid"].tolist() == [30, 41] and int(raw["query_frame"]) == 2
        assert "cells" not in raw.files  # the whole grid: the queries are implicit
    back = load_tracks(path)
    assert back["tracks"].dtype == np.float32 and back["occluded"].dtype == bool
    assert np.array_equal(back["occluded"], occluded)
    assert np.array_equal(back["queries"], queries.numpy())
    # float16 keeps 11 significant bits: within 1/8 px below 256 px, 1/4 px below 512 px.
    error = np.abs(back["tracks"] - tracks)
    assert error[np.abs(tracks) < 256].max() <= 0.125 and error.max() <= 0.25
    # float16 tracks + 1 bit per frame: under half of float32 tracks + bool visibility (+ queries).
    plain = save_tracks(tmp_path / "p.npz", tracks, occluded, queries, (30, 41))
    assert path.stat().st_size < 0.5 * plain.stat().st_size
    assert np.array_equal(load_tracks(plain)["tracks"], tracks)
    # A masked grid keeps the indices of its cells.
    thinned = queries[::7]
    save_dense(tmp_path / "m.npz", tracks[::7], occluded[::7], thinned, 1, (30, 41))
    assert np.array_equal(load_tracks(tmp_path / "m.npz")["queries"], thinned.numpy())


def test_dense_queries_grid_order():
    q = dense_queries(10, 7, 3, frame=1)
    assert q.shape == (4 * 3, 3)
    assert torch.equal(q[4], torch.tensor([1.0, 3.0, 3.0]))  # row 1, column 1 → (t, y, x) = (1, 3, 3)
    mask = np.zeros((10, 7), bool)
    mask[6:, :] = True
    assert q.new_tensor([6, 9]).tolist() == sorted(set(dense_queries(10, 7, 3, mask=mask)[:, 1].tolist()))


def test_colours_follow_starting_position():
    queries = dense_queries(64, 64, 8)
    colors = start_colors(queries, (64, 64)).astype(int)
    grid = colors.reshape(8, 8, 3)
    # neighbours look alike, opposite corners do not
    assert np.abs(grid[1:] - grid[:-1]).sum(-1).max() < np.abs(grid[0, 0] - grid[7, 7]).sum()
    assert len({tuple(c) for c in colors}) > 32


def test_dots_land_on_the_track_positions():
    frame = np.zeros((20, 30, 3), np.uint8)
    points = np.array([[3.2, 4.6], [29.0, 19.0], [np.nan, 1.0], [40.0, 5.0]])
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
    out = draw_dots(frame, points, colors, size=1, alpha=1.0)
    assert out[5, 3].tolist() == [255, 0, 0] and out[19, 29].tolist() == [0, 255, 0]
    assert (out.sum(-1) > 0).sum() == 2  # the NaN point and the one outside draw nothing
    big = draw_dots(frame, points[:1], colors[:1], size=3, alpha=1.0)
    assert (big.sum(-1) > 0).sum() == 9 and big[4:7, 2:5, 0].min() == 255
