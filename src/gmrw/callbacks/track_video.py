"""A video of the predicted tracks on the first validation video, after every validation.

The scores themselves (``val/aj``, ``val/delta_avg``, ``val/oa``) are logged by the
LightningModule; this callback shows what they measure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from gmrw.callbacks.steps import logging_step
from gmrw.video import resize_frames, write_video
from gmrw.viz.tracks import render_tracks


def upscale(video: np.ndarray, tracks: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Enlarge a small video (T, H, W, 3) uint8 by an integer factor so its short side is at
    least ``min_side`` (bilinear), and move (N, T, 2) (x, y) tracks with it (pixel centres at
    integers). Tiny validation clips are unreadable at their own size."""
    factor = max(1, math.ceil(min_side / min(video.shape[1:3])))
    if factor == 1:
        return video, tracks
    big = resize_frames(video, (factor * video.shape[1], factor * video.shape[2])).numpy()
    return big, (tracks + 0.5) * factor - 0.5


class TrackVideoLogger(pl.Callback):
    """After every ``every_n_validations``-th validation (sanity checks excluded), tracks the
    queries of the first validation video with the model's own tracking defaults and writes
    ``<output_dir>/viz/tracks_step<step>.mp4``; with a W&B logger the video is also logged as
    ``val/tracks``, at the step of the validation's scores. Runs on global rank 0 only, whose first validation batch is video 0.

    Expects validation batches of the TAP-Vid contract (``video`` (1, T, H, W, 3) uint8,
    ``query_points`` (1, N, 3) (t, y, x) pixels, ``name``) and a module with ``model``. If the module's
    ``validation_step`` returns ``{"tracks", "occluded"}`` for the batch, those are drawn and
    nothing is tracked again.

    Args:
        output_dir: the run directory.
        every_n_validations: draw after every n-th validation.
        fps: frame rate of the mp4.
        trail_length: frames of trail behind each point.
        min_side: small videos are enlarged (integer factor) to at least this short side.
        max_points: draw at most this many tracks (the first ones).
        val_set: draw the first video of this validation set (a name in the datamodule's
            ``val_set_names``, e.g. ``val_photos``) when there is one; else of the first set.
    """

    def __init__(
        self,
        output_dir: str,
        every_n_validations: int = 1,
        fps: float = 6.0,
        trail_length: int = 8,
        min_side: int = 256,
        max_points: int = 64,
        val_set: str | None = None,
    ):
        super().__init__()
        if every_n_validations <= 0:
            raise ValueError("every_n_validations must be positive")
        self.directory = Path(output_dir) / "viz"
        self.every_n_validations = every_n_validations
        self.fps = fps
        self.trail_length = trail_length
        self.min_side = min_side
        self.max_points = max_points
        self.val_set = val_set
        self.validations = 0
        self._first: dict | None = None
        self.written: list[Path] = []

    def _loader_index(self, trainer: pl.Trainer) -> int:
        """Index of the validation loader to draw from: the set named ``val_set`` if the
        datamodule has it, else the first."""
        names = list(getattr(getattr(trainer, "datamodule", None), "val_set_names", None) or [])
        return names.index(self.val_set) if self.val_set in names else 0

    def _active(self, trainer: pl.Trainer) -> bool:
        return trainer.is_global_zero and not trainer.sanity_checking

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if batch_idx != 0 or dataloader_idx != self._loader_index(trainer) or not self._active(trainer):
            return
        if not isinstance(batch, dict) or "video" not in batch or "query_points" not in batch:
            return
        first = {
            "video": batch["video"][:1].detach().cpu(),
            "query_points": batch["query_points"][:1, : self.max_points].detach().cpu(),
            "name": str(batch.get("name", ["video 0"])[0]),
        }
        if isinstance(outputs, dict) and "tracks" in outputs and "occluded" in outputs:
            first["tracks"] = outputs["tracks"][:1, : self.max_points].detach().cpu()
            first["occluded"] = outputs["occluded"][:1, : self.max_points].detach().cpu()
        self._first = first

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        first, self._first = self._first, None
        if first is None or trainer.sanity_checking:
            return
        self.validations += 1
        if (self.validations - 1) % self.every_n_validations:
            return
        if "tracks" in first:
            tracks, occluded = first["tracks"], first["occluded"]
        else:
            from gmrw.tracking import track

            device = pl_module.device
            with torch.no_grad():  # the model's own tracking defaults, as validation uses
                tracks, occluded = track(
                    pl_module.model, first["video"].to(device), first["query_points"].to(device)
                )
        step = trainer.global_step
        path = self.write(first["video"][0].numpy(), tracks[0].cpu().numpy(), occluded[0].cpu().numpy(), step)
        caption = f"step {step}: predicted tracks on {first['name']} (hollow: predicted occluded)"
        for logger in trainer.loggers:
            log_video = getattr(logger, "log_video", None)  # WandbLogger
            if callable(log_video):
                # At the step the validation's scores are logged at (see logging_step).
                log_video(key="val/tracks", videos=[str(path)], step=logging_step(trainer), caption=[caption])

    def write(self, video: np.ndarray, tracks: np.ndarray, occluded: np.ndarray, step: int) -> Path:
        """Render (T, H, W, 3) uint8 with (N, T, 2) tracks / (N, T) occlusion to this step's mp4."""
        video, tracks = upscale(video, tracks, self.min_side)
        path = self.directory / f"tracks_step{step:07d}.mp4"
        write_video(path, render_tracks(video, tracks, occluded, trail_length=self.trail_length), self.fps)
        self.written.append(path)
        return path
