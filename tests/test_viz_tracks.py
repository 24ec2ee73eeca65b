"""Drawing tracks: markers where the tracks say, hollow when occluded, trails, and atomic mp4s."""

from __future__ import annotations

import numpy as np
import pytest

from gmrw.video import write_video
from gmrw.viz.tracks import draw_tracks, render_tracks, track_colors


def _frame(h=48, w=64, value=128):
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_track_colors_are_distinct():
    colors = track_colors(12)
    assert colors.shape == (12, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 12
    assert track_colors(0).shape == (0, 3)


def test_visible_marker_is_a_filled_disc_in_the_track_colour():
    frame = _frame()
    tracks = np.array([[[20.0, 10.0], [30.0, 25.0]]])  # one track, two frames, (x, y)
    occluded = np.zeros((1, 2), bool)
    color = np.array([[250, 10, 10]], np.uint8)
    out = draw_tracks(frame, tracks, occluded, t=1, colors=color, trail_length=0, radius=4)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(frame, _frame()), "the input frame was modified"
    assert np.array_equal(out[25, 30], color[0])  # (row y, col x) = the track at t=1
    assert np.array_equal(out[25 + 2, 30 - 2], color[0])
    assert np.array_equal(out[10, 20], frame[10, 20]), "frame 0's position must not be drawn at t=1"
    far = np.ones(frame.shape[:2], bool)
    far[25 - 7 : 25 + 8, 30 - 7 : 30 + 8] = False
    assert np.array_equal(out[far], frame[far]), "pixels away from the marker changed"


def test_occluded_marker_is_a_ring():
    frame = _frame()
    tracks = np.array([[[30.0, 20.0]]])
    out = draw_tracks(
        frame, tracks, np.ones((1, 1), bool), t=0, colors=np.array([[0, 0, 255]], np.uint8), radius=5
    )
    assert np.array_equal(out[20, 30], frame[20, 30]), "an occluded marker must be hollow"
    ring = out[20, 30 + 4]  # on the ring (radius 5, width 1.5: centre line at 4.25)
    assert ring[2] > 200 and ring[0] < 60


def test_trail_joins_visible_positions_only():
    frame = _frame(value=0)
    xs = np.array([5.0, 15.0, 25.0, 35.0, 45.0])
    tracks = np.stack([xs, np.full(5, 20.0)], -1)[None]
    occluded = np.zeros((1, 5), bool)
    occluded[0, 1] = True  # no segment may touch frame 1's position
    color = np.array([[255, 255, 255]], np.uint8)
    out = draw_tracks(frame, tracks, occluded, t=4, colors=color, trail_length=4, radius=2, line_width=2)
    row = out[20, :, 0].astype(int)
    assert row[30] > 100 and row[40] > 100, "segments 2→3 and 3→4 should be drawn"
    assert row[10] == 0 and row[20] == 0, "segments touching the occluded frame 1 must not be drawn"
    assert row[30] < row[40], "older parts of the trail fade"


def test_points_outside_or_nan_are_skipped():
    frame = _frame()
    tracks = np.array([[[-50.0, 10.0]], [[np.nan, np.nan]], [[1000.0, 1000.0]]])
    out = draw_tracks(frame, tracks, np.zeros((3, 1), bool), t=0)
    assert np.array_equal(out, frame)


def test_render_and_write_video_roundtrip(tmp_path):
    from gmrw.video import import_decord

    decord = import_decord()

    frames = [_frame(value=v) for v in (40, 80, 120, 160, 200)]
    tracks = np.tile(np.array([[[32.0, 24.0]]]), (1, 5, 1))
    path = write_video(tmp_path / "out.mp4", render_tracks(frames, tracks, np.zeros((1, 5), bool)), fps=5)
    reader = decord.VideoReader(str(path))
    assert len(reader) == 5 and reader[0].shape == (48, 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_write_video_leaves_nothing_when_frames_fail(tmp_path):
    def frames():
        yield _frame()
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        write_video(tmp_path / "out.mp4", frames())
    assert list(tmp_path.iterdir()) == []


def test_odd_frame_sizes_are_padded(tmp_path):
    from gmrw.video import import_decord

    decord = import_decord()

    path = write_video(tmp_path / "odd.mp4", [np.zeros((15, 21, 3), np.uint8)] * 2)
    assert decord.VideoReader(str(path))[0].shape == (16, 22, 3)
