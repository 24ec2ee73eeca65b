"""The fine-match step's maps at another size than the global match's (``fine_size``):
``GMRW.encode_fine``, ``point_flow(maps=...)``, and the tracking option through gmrw.track, the
online session and the benchmarks' ``--setting``."""

from __future__ import annotations

import pytest
import torch

from gmrw.models import GMRW
from gmrw.tracking import TrackingOptions, resolve_options, track
from gmrw.tracking.encodings import TwoSizeEncoding, cat, nbytes, num_rows, repeat_rows, take
from gmrw.tracking.flows import FlowModel
from gmrw.tracking.online import OnlineSession

BOTH_LEVELS = {"channels": 8, "radius": 2, "pixel_channels": 4, "pixel_radius": 1}


def tiny(fine_match=BOTH_LEVELS, seed: int = 0) -> GMRW:
    torch.manual_seed(seed)
    return GMRW(feature_channels=32, num_transformer_layers=1, fine_match=fine_match).eval()


def smooth_video(frames: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0) -> torch.Tensor:
    """(1, T, H, W, 3) in [0, 255]: a smooth random texture drifting right by 1.5 px a frame."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    base = torch.nn.functional.interpolate(
        torch.rand(1, 3, h // 4, w // 4 + 8, generator=g), size=(h, w + 32)
    )
    shots = [base[..., int(1.5 * t) : int(1.5 * t) + w] for t in range(frames)]
    return (torch.cat(shots).permute(0, 2, 3, 1) * 255).unsqueeze(0)


QUERIES = torch.tensor([[[0.0, 10.0, 12.0], [0.0, 20.5, 30.25], [1.0, 30.0, 20.0]]])  # (t, y, x)


def test_encode_fine_is_the_maps_encode_carries():
    """The step's maps alone (the backbone's first stage only) equal those of the full encoding."""
    model = tiny()
    x = torch.rand(2, 3, 32, 40) * 255
    with torch.no_grad():
        _, maps = model.split_features(model.encode(x))
        alone = model.encode_fine(x)
        coarse = model.encode_coarse(x)
    assert alone.half.shape == (2, 8, 16, 20) and alone.full.shape == (2, 4, 32, 40)
    assert torch.allclose(alone.half, maps.half, atol=1e-6)
    assert torch.allclose(alone.full, maps.full, atol=1e-6)
    assert coarse.shape == (2, 32, 8, 10)
    with pytest.raises(ValueError, match="no fine-match step"):
        GMRW(feature_channels=32, num_transformer_layers=1).encode_fine(x)


def test_fine_size_equal_to_the_processing_size_gives_the_same_tracks():
    """Two sizes that are one: the maps come from the same frames, so the tracks agree (float
    rounding aside); a larger fine size moves them, and the query frame stays the query."""
    model = tiny()
    video = smooth_video()
    with torch.no_grad():
        one, occ_one = track(model, video, QUERIES, mode="direct", processing_size=32)
        same, occ_same = track(model, video, QUERIES, mode="direct", processing_size=32, fine_size=32)
        larger, _ = track(model, video, QUERIES, mode="direct", processing_size=32, fine_size=0)
    assert torch.allclose(one, same, atol=1e-4)
    assert torch.equal(occ_one, occ_same)
    assert not torch.allclose(one, larger, atol=1e-2)
    assert torch.equal(larger[0, 0, 0], torch.tensor([12.0, 10.0]))  # (x, y) of the query


def test_the_candidate_and_chained_modes_track_with_two_sizes():
    model = tiny()
    video = smooth_video(5)
    with torch.no_grad():
        for kwargs in ({"mode": "direct", "chained_candidate": True, "round_trip": 8.0}, {"mode": "chained"}):
            tracks, occluded = track(model, video, QUERIES, processing_size=32, fine_size=64, **kwargs)
            assert tracks.shape == (1, 3, 5, 2) and occluded.shape == (1, 3, 5)
            assert torch.isfinite(tracks).all()


def test_online_tracking_with_two_sizes_equals_offline_chained():
    """The online session's chained step is the offline forward sweep's, at both sizes."""
    model = tiny()
    video = smooth_video(4)
    queries = QUERIES[:, :2]  # both on frame 0
    options = resolve_options(model, mode="chained", processing_size=32, fine_size=0)
    with torch.no_grad():
        offline, _ = track(model, video, queries, options=options)
        session = OnlineSession(model, options)
        session.add_queries(queries[0])
        online = [session.step(frame)[0] for frame in video[0]]
    assert torch.allclose(torch.stack(online, dim=1), offline[0], atol=1e-4)
    assert session.memory_bytes() > 0


def test_fine_size_needs_the_step_and_a_sane_value():
    without = GMRW(feature_channels=32, num_transformer_layers=1).eval()
    with pytest.raises(ValueError, match="fine-match step"):
        track(without, smooth_video(2), QUERIES[:, :1], processing_size=32, fine_size=64)
    for bad in (-1, 4, 2.5, True, "64"):
        with pytest.raises(ValueError, match="fine_size"):
            TrackingOptions(fine_size=bad)
    options = TrackingOptions(processing_size=160, fine_size=0)
    assert options.fine_model_size(240, 320) == (240, 320)
    assert TrackingOptions(processing_size=160, fine_size=256).fine_model_size(256, 256) == (256, 256)
    assert TrackingOptions(processing_size=160).fine_model_size(256, 256) is None


def test_own_size_maps_stop_at_twice_the_global_match():
    """fine_size=0 on HD video would cost ~17x the global match's encoding a frame for maps whose
    window reaches ever less of a coarse miss: the own size stops at twice the processing size."""
    options = TrackingOptions(processing_size=256, fine_size=0)
    assert options.fine_model_size(480, 640) == (480, 640)  # under the cap: the video's own
    assert options.fine_model_size(144, 176) == (144, 176)  # smaller than the global match: own too
    assert options.fine_model_size(1080, 1920) == (512, 912)  # capped: short side 2 x 256
    assert options.fine_model_size(1920, 1080) == (912, 512)
    assert TrackingOptions(processing_size=160, fine_size=0).fine_model_size(1080, 1920) == (320, 568)
    assert TrackingOptions(upsample_factor=2, fine_size=0).fine_model_size(256, 256) == (256, 256)
    # an explicit size is the caller's choice, not capped
    assert TrackingOptions(processing_size=256, fine_size=1080).fine_model_size(1080, 1920) == (1080, 1920)


def test_a_checkpoint_can_record_fine_size():
    model = tiny()
    model.tracking_defaults = {"mode": "direct", "processing_size": 32, "fine_size": 64}
    assert resolve_options(model).fine_size == 64
    assert resolve_options(model, fine_size=0).fine_size == 0


def test_two_size_encodings_index_like_tensors():
    enc = TwoSizeEncoding(torch.rand(3, 4, 2, 2), torch.rand(3, 2, 8, 8), None)
    assert num_rows(enc) == 3
    picked = take(enc, torch.tensor([2, 0]))
    assert torch.equal(picked.half[0], enc.half[2]) and picked.full is None
    both = cat([enc, picked])
    assert num_rows(both) == 5 and torch.equal(both.coarse[3], enc.coarse[2])
    assert num_rows(repeat_rows(take(enc, slice(0, 1)), 4)) == 4
    assert nbytes(enc) == 4 * (3 * 16 + 3 * 128)


def test_flow_model_refines_only_the_coarse_part():
    """One refinement of a two-size pair keeps each frame's maps as they were encoded."""
    model = tiny()
    frames = smooth_video(2)[0]
    reader = FlowModel(model, (40, 48), (32, 40), "argmax", fine_size=(64, 80))
    with torch.no_grad():
        enc = reader.encode(frames)
        src, dst = reader.refine(take(enc, slice(0, 1)), take(enc, slice(1, 2)))
    assert enc.half.shape[-2:] == (32, 40) and enc.coarse.shape[-2:] == (8, 10)
    assert torch.equal(src.half, enc.half[:1]) and not torch.equal(src.coarse, enc.coarse[:1])
