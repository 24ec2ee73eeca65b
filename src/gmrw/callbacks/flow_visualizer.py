"""Pictures of what the model predicts, every N training steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

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
    """Every ``every_n_steps`` steps, logs f1, f2 and the model's flows f1→f2 and f2→f1' for the
    first clip of the batch: to wandb when it is the logger, else as PNGs under ``<output_dir>/viz``."""

    def __init__(self, output_dir: str, every_n_steps: int = 500, method: str = "weighted_sum"):
        super().__init__()
        if every_n_steps <= 0:
            raise ValueError("every_n_steps must be positive")
        self.output_dir = Path(output_dir) / "viz"
        self.every_n_steps = every_n_steps
        self.method = method

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every_n_steps != 0:
            return
        frames = batch["frames"][:1].float()
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            src = torch.cat([frames[:, 0], frames[:, 1]])
            dst = torch.cat([frames[:, 1], frames[:, 3]])
            flows = pl_module.model.flow(src, dst, method=self.method)
        pl_module.train(was_training)
        panel = flow_panel(frames[0], flows[0], flows[1])
        caption = f"step {step}: f1 | f2 | flow f1→f2 | flow f2→f1'"
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        for logger in loggers:
            logger.log_image(key="train/flows", images=[panel], caption=[caption], step=step)
        if not loggers:
            import imageio.v3 as iio

            self.output_dir.mkdir(parents=True, exist_ok=True)
            iio.imwrite(self.output_dir / f"flows_step{step:07d}.png", panel)
