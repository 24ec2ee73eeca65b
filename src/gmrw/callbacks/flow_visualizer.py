"""Pictures of what the model predicts: at the start of training, after every validation, and
every N training steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from gmrw.callbacks.steps import logging_step
from gmrw.viz.flow import flow_to_rgb


def flow_panel(frames: torch.Tensor, flow_12: torch.Tensor, flow_21: torch.Tensor) -> np.ndarray:
    """One row: f1 | f2 | flow f1→f2 | flow f2→f1' as an ``(H, 4W, 3)`` uint8 image.

    frames ``(4, 3, H, W)`` in [0, 255]; flows ``(2, H, W)`` pixels.
    """
    scale = max(float(flow_12.norm(dim=0).max()), float(flow_21.norm(dim=0).max()), 1e-6)
    f1 = frames[0].permute(1, 2, 0).clamp(0, 255).to(torch.uint8)
    f2 = frames[1].permute(1, 2, 0).clamp(0, 255).to(torch.uint8)
    tiles = [f1, f2, flow_to_rgb(flow_12, scale), flow_to_rgb(flow_21, scale)]
    return torch.cat([t.cpu() for t in tiles], dim=1).numpy()


class FlowVisualizer(pl.Callback):
    """Draws f1, f2 and the model's flows f1→f2 and f2→f1' for the first clip of a training batch:
    the untrained model's on the first batch of a run, the latest batch's after every validation
    (so each validation's scores come with a picture at the same step), and every
    ``every_n_steps`` steps. To W&B as ``train/flows`` when it is a logger, else as PNGs under
    ``<output_dir>/viz``. Global rank 0 only.

    Training clips follow the batch contract: ``frames`` (B, 4, 3, H, W) float in [0, 255].
    """

    def __init__(self, output_dir: str, every_n_steps: int = 500, method: str = "weighted_sum"):
        super().__init__()
        if every_n_steps <= 0:
            raise ValueError("every_n_steps must be positive")
        self.output_dir = Path(output_dir) / "viz"
        self.every_n_steps = every_n_steps
        self.method = method
        self._clip: torch.Tensor | None = None  # (1, 4, 3, H, W): the latest batch's first clip
        self._drawn_at: int | None = None  # the logging step of the last picture

    @rank_zero_only
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._clip = batch["frames"][:1].detach().float().clone()
        if trainer.global_step == 0:
            self.draw(trainer, pl_module, "untrained")

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.draw(trainer, pl_module, f"step {trainer.global_step}")

    @rank_zero_only
    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.draw(trainer, pl_module, f"step {trainer.global_step}")

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, when: str) -> None:
        """Draw the kept clip with the module's current weights (once per logging step)."""
        step = logging_step(trainer)
        if self._clip is None or self._drawn_at == step:
            return
        self._drawn_at = step
        frames = self._clip.to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            src = torch.cat([frames[:, 0], frames[:, 1]])
            dst = torch.cat([frames[:, 1], frames[:, 3]])
            flows = pl_module.model.flow(src, dst, method=self.method)
        pl_module.train(was_training)
        panel = flow_panel(frames[0], flows[0], flows[1])
        caption = f"{when}: f1 | f2 | flow f1→f2 | flow f2→f1'"
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        for logger in loggers:
            logger.log_image(key="train/flows", images=[panel], caption=[caption], step=step)
        if not loggers:
            import imageio.v3 as iio

            self.output_dir.mkdir(parents=True, exist_ok=True)
            iio.imwrite(self.output_dir / f"flows_step{trainer.global_step:07d}.png", panel)
