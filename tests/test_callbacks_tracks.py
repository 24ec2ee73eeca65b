"""The training-time tracks video: written after validation in a short run, and sent to a logger
that takes videos (W&B)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gmrw.callbacks.track_video import TrackVideoLogger, upscale
from gmrw.datatools.tiny import textured_video
from gmrw.models import GMRW


def _batch(num_frames=5, size=32, num_points=4):
    video = torch.from_numpy(textured_video(num_frames, size, size, seed=0))[None]
    queries = torch.tensor([[[t % num_frames, 8.0 + 3 * t, 10.0 + 2 * t] for t in range(num_points)]])
    return {"video": video, "query_points": queries, "name": ["clip0"]}


class VideoLogger:
    def __init__(self):
        self.calls = []

    def log_video(self, key, videos, step=None, **kwargs):
        self.calls.append((key, videos, step, kwargs))


def _trainer(step=7, loggers=()):
    """A trainer validating within fit after ``step`` optimiser steps: Lightning logs that
    validation's scores at step ``step - 1`` (the batches that stepped before the last one)."""
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=step - 1))
    return SimpleNamespace(
        is_global_zero=True, sanity_checking=False, global_step=step, loggers=list(loggers), fit_loop=loop
    )


def test_video_written_and_logged(tmp_path):
    from gmrw.video import import_decord

    decord = import_decord()

    torch.manual_seed(0)
    model = GMRW(feature_channels=32, num_transformer_layers=2, ffn_dim_expansion=2).eval()
    model.tracking_defaults = {"mode": "chained", "method": "weighted_sum", "upsample_factor": 1}
    module = SimpleNamespace(model=model, device=torch.device("cpu"))
    logger = VideoLogger()
    callback = TrackVideoLogger(str(tmp_path), min_side=64)
    trainer = _trainer(step=7, loggers=[logger])
    callback.on_validation_batch_end(trainer, module, None, _batch(), 0)
    callback.on_validation_batch_end(trainer, module, None, {"video": None}, 1)  # later batches ignored
    callback.on_validation_epoch_end(trainer, module)
    path = tmp_path / "viz" / "tracks_step0000007.mp4"
    reader = decord.VideoReader(str(path))
    assert len(reader) == 5 and reader[0].shape == (64, 64, 3)  # 32 px enlarged ×2
    # Named by the weights' step; logged at the step of the validation's scores.
    assert logger.calls and logger.calls[0][:3] == ("val/tracks", [str(path)], 6)
    assert "clip0" in logger.calls[0][3]["caption"][0]
    # No batch seen since: nothing more is drawn.
    callback.on_validation_epoch_end(trainer, module)
    assert callback.written == [path]


def test_tracks_returned_by_the_module_are_drawn_without_tracking(tmp_path):
    class NoModel:
        def flow(self, *args, **kwargs):
            raise AssertionError("the callback must reuse the module's tracks")

    module = SimpleNamespace(model=NoModel(), device=torch.device("cpu"))
    batch = _batch(num_points=2)
    outputs = {
        "tracks": torch.tensor([[[[10.0, 10.0]] * 5, [[20.0, 5.0]] * 5]]),
        "occluded": torch.zeros(1, 2, 5, dtype=torch.bool),
    }
    callback = TrackVideoLogger(str(tmp_path), every_n_validations=2, min_side=32)
    for step in (1, 2, 3):
        callback.on_validation_batch_end(_trainer(step), module, outputs, batch, 0)
        callback.on_validation_epoch_end(_trainer(step), module)
    assert [p.name for p in callback.written] == ["tracks_step0000001.mp4", "tracks_step0000003.mp4"]


def test_sanity_check_and_other_ranks_draw_nothing(tmp_path):
    callback = TrackVideoLogger(str(tmp_path))
    sanity = SimpleNamespace(is_global_zero=True, sanity_checking=True, global_step=0, loggers=[])
    callback.on_validation_batch_end(sanity, None, None, _batch(), 0)
    other = SimpleNamespace(is_global_zero=False, sanity_checking=False, global_step=0, loggers=[])
    callback.on_validation_batch_end(other, None, None, _batch(), 0)
    assert callback._first is None


def test_upscale_moves_tracks_with_pixels():
    video = np.zeros((2, 8, 10, 3), np.uint8)
    video[:, 3, 4] = 255
    big, tracks = upscale(video, np.array([[[4.0, 3.0], [4.0, 3.0]]]), min_side=32)
    assert big.shape == (2, 32, 40, 3)
    x, y = tracks[0, 0]
    assert big[0, int(round(y)), int(round(x))].max() > 100


@pytest.mark.slow
def test_short_training_run_writes_track_videos(tmp_path):
    """The default callbacks in a 2-step run that validates once, at step 2."""
    from gmrw.video import import_decord

    decord = import_decord()

    from gmrw.training.run import train
    from helpers import compose_train

    overrides = [
        "model.net.feature_channels=32",
        "model.net.num_transformer_layers=2",
        "model.net.ffn_dim_expansion=2",
        "data.num_workers=0",
        "logger=csv",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "data.val_sets.val.num_videos=2",
        "data.batch_size=2",
        "data.train_set.img_size1=[64,64]",
        "data.train_set.img_size2=[48,48]",
        "data.train_set.frame_size=[64,64]",
        "data.train_set.texture_bank=4",
        "data.val_sets.val.num_frames=6",
        "data.val_sets.val.frame_size=[48,48]",
        "data.val_sets.val_photos.num_videos=1",
        "data.val_sets.val_photos.num_frames=5",
        "model.tracking.processing_size=64",
        "model.validation_tracking.processing_size=64",
        "validate_before_training=false",
    ]
    summary = train(compose_train(overrides, tmp_path))
    assert "val/aj" in summary["last"] and "val_photos/aj" in summary["last"]
    videos = sorted((tmp_path / "viz").glob("tracks_step*.mp4"))
    assert [p.name for p in videos] == ["tracks_step0000002.mp4"]
    reader = decord.VideoReader(str(videos[-1]))
    # The real-photo benchmark's first video is drawn (callbacks.track_video.val_set: val_photos).
    assert len(reader) == 5 and min(reader[0].shape[:2]) >= 256
