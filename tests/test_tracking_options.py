"""Tracking options: explicit values, then the model's own defaults, then the library's."""

from __future__ import annotations

import pytest
import torch

from gmrw.tracking import LIBRARY_DEFAULTS, TrackingOptions, resolve_options, track
from gmrw.tracking.frames import scaled_size


class RecordingFlow(torch.nn.Module):
    """A stand-in model with zero flow that records the frame sizes it is given."""

    def __init__(self, defaults=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.tracking_defaults = defaults or {}
        self.sizes: list[tuple[int, int]] = []

    def flow(self, src, dst, method="weighted_sum", window=None, size=None):
        self.sizes += [tuple(src.shape[-2:])] * src.shape[0]
        return torch.zeros(src.shape[0], 2, *size)


def _video(t=3, h=64, w=96):
    return torch.randint(0, 255, (1, t, h, w, 3), dtype=torch.uint8)


def test_precedence_explicit_then_model_then_library():
    model = RecordingFlow({"mode": "direct", "processing_size": 128})
    assert resolve_options(None) == LIBRARY_DEFAULTS
    options = resolve_options(model)
    assert options.mode == "direct" and options.processing_size == 128 and options.method == "weighted_sum"
    assert resolve_options(model, mode="chained").mode == "chained"
    # An explicit factor replaces the model's processing size, and the reverse.
    options = resolve_options(model, upsample_factor=2)
    assert options.processing_size is None and options.upsample_factor == 2
    options = resolve_options(RecordingFlow({"upsample_factor": 4}), processing_size=64)
    assert options.processing_size == 64 and options.upsample_factor is None  # one size in effect
    with pytest.raises(ValueError, match="not both"):
        resolve_options(model, upsample_factor=2, processing_size=64)
    # 0 keeps the video's size; resolved options given back as keywords resolve to themselves
    assert resolve_options(model, processing_size=0) == resolve_options(model, upsample_factor=1)
    assert resolve_options(model, **options.as_dict()) == options
    # A checkpoint written while the two were separate options may carry both: its size wins.
    assert (
        resolve_options(RecordingFlow({"upsample_factor": 1, "processing_size": 160})).processing_size == 160
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"mode": "sideways"}, "tracking mode"),
        ({"method": "weighted_argmax"}, "needs a window"),
        ({"upsample_factor": 0}, "positive"),
        ({"processing_size": 4}, "at least 8"),
        ({"processing_size": 100.5}, "integer"),
    ],
)
def test_bad_options_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        resolve_options(None, **bad)
    with pytest.raises(ValueError, match=match):
        resolve_options(RecordingFlow(bad))  # from a model's defaults too


def test_unknown_option_names_are_refused():
    with pytest.raises(TypeError, match="unknown tracking options"):
        resolve_options(None, upsample=2)
    with pytest.raises(ValueError, match="unknown options"):
        resolve_options(RecordingFlow({"resize": 2}))


def test_model_size_follows_processing_size_or_factor():
    assert TrackingOptions(processing_size=128).model_size(256, 384) == (128, 192)
    assert TrackingOptions(processing_size=128).model_size(368, 480) == scaled_size(368, 480, 128)
    assert TrackingOptions(upsample_factor=2).model_size(256, 256) == (512, 512)
    assert TrackingOptions().model_size(64, 64) == (64, 64)
    assert TrackingOptions().model_size(50, 70) == (48, 72)  # the model needs multiples of 8


def test_track_without_options_uses_the_models_defaults():
    video, queries = _video(), torch.tensor([[[0.0, 10.0, 20.0]]])
    model = RecordingFlow({"mode": "direct", "processing_size": 32})
    tracks, occluded = track(model, video, queries)
    assert set(model.sizes) == {(32, 48)}  # 64×96 seen at short side 32
    assert len(model.sizes) == 2  # direct mode: query frame 0 → frames 1 and 2
    assert torch.allclose(tracks[0, 0], torch.tensor([20.0, 10.0]).expand(3, 2))  # zero flow
    # An explicit option wins over the model's.
    model.sizes.clear()
    track(model, video, queries, upsample_factor=1, mode="chained")
    assert set(model.sizes) == {(64, 96)} and len(model.sizes) == 4  # 2 steps × (forward, backward)


class ShiftFlow(RecordingFlow):
    """Forward flows (later frame) shift by +3 px in x; backward flows shift back by -3 px, except
    that pairs into frame 0 from frame 2 come back 10 px short (a failed round trip)."""

    def __init__(self, defaults=None):
        super().__init__(defaults)
        self.frame_pairs: list[tuple[float, float]] = []

    def flow(self, src, dst, method="weighted_sum", window=None, size=None):
        # frames carry their index in every pixel (see _indexed_video)
        s, d = src[:, 0, 0, 0], dst[:, 0, 0, 0]
        out = torch.zeros(src.shape[0], 2, *size)
        for k in range(src.shape[0]):
            shift = 3.0 * (float(d[k]) - float(s[k]))
            if float(s[k]) == 2 and float(d[k]) == 0:
                shift += 10.0
            out[k, 0] = shift
        return out


def _indexed_video(t=3, h=32, w=48):
    video = torch.zeros(1, t, h, w, 3, dtype=torch.uint8)
    for i in range(t):
        video[0, i] = i
    return video


def test_direct_round_trip_flags_points_that_do_not_come_back():
    video = _indexed_video()
    queries = torch.tensor([[[0.0, 10.0, 5.0]]])
    model = ShiftFlow()
    tracks, occluded = track(model, video, queries, mode="direct")
    assert torch.allclose(tracks[0, 0, :, 0], torch.tensor([5.0, 8.0, 11.0]))
    assert not occluded.any()  # the paper's rule: only points outside the frame
    tracks2, occluded = track(model, video, queries, mode="direct", round_trip=4.0)
    assert torch.equal(tracks2, tracks)
    assert occluded[0, 0].tolist() == [False, False, True]  # frame 2 → 0 misses by 10 px
    assert not track(model, video, queries, mode="direct", round_trip=12.0)[1].any()
    with pytest.raises(ValueError, match="round_trip"):
        resolve_options(None, round_trip=0)


def test_validation_can_track_more_cheaply_than_the_recorded_defaults(monkeypatch):
    """``validation_tracking`` replaces the model's options during validation only: the model
    still carries (and checkpoints record) ``tracking``."""
    import gmrw.training.module as module_file
    from gmrw.metrics import TapVidMetric
    from gmrw.training.module import GMRWLitModule

    common = {
        "net": {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2},
        "optimizer": {"lr": 1e-4, "weight_decay": 0.0},
        "smoothness_curriculum": {},
        "tracking": {"mode": "direct", "processing_size": 192, "method": "weighted_argmax", "window": 2},
    }
    module = GMRWLitModule(**common, validation_tracking={"processing_size": 64})
    assert module.model.tracking_defaults["processing_size"] == 192
    assert module.hparams["validation_tracking"] == {"processing_size": 64}
    seen = {}

    def fake_track_and_score(model, batch, metric, **tracking):
        seen.update(tracking)
        return torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, dtype=torch.bool)

    monkeypatch.setattr(module_file, "track_and_score", fake_track_and_score)
    module.val_metrics = torch.nn.ModuleDict({"val": TapVidMetric()})
    module.validation_step({}, 0)
    assert seen == {"processing_size": 64}
    assert resolve_options(module.model, **seen).processing_size == 64
    assert resolve_options(module.model).processing_size == 192  # what a user's track() call gets
    with pytest.raises(ValueError, match="processing_size"):
        GMRWLitModule(**common, validation_tracking={"processing_size": 3})


def test_track_takes_options_resolved_once():
    """``options=`` (resolved once, e.g. for a whole benchmark, or a Predictor's) tracks as the same
    options given one by one; giving both ways at once is refused."""
    video, queries = _video(), torch.tensor([[[0.0, 10.0, 20.0]]])
    model = RecordingFlow({"mode": "direct", "processing_size": 32})
    resolved = resolve_options(model, mode="chained")
    one_by_one = track(model, video, queries, mode="chained")
    sizes = list(model.sizes)
    model.sizes.clear()
    at_once = track(model, video, queries, options=resolved)
    assert model.sizes == sizes and all(torch.equal(a, b) for a, b in zip(one_by_one, at_once))
    with pytest.raises(TypeError, match="not both"):
        track(model, video, queries, mode="direct", options=resolved)
