"""The LightningModule: the GMRW model, its random-walk objective, and TAP-Vid validation.

Batches crossing into this module follow docs/CONTRACTS.md:

* training: ``frames`` (B, 4, 3, H, W) float in [0, 255] ordered ``[f1, f2, f2', f1']``,
  ``affine_b2f`` (B, 2, 3), ``index`` (B,);
* validation: one TAP-Vid example per batch, ``video`` (1, T, H, W, 3) uint8,
  ``query_points`` (1, N, 3) as (t, y, x) pixels, ``target_points`` (1, N, T, 2) as (x, y) pixels,
  ``occluded`` (1, N, T) bool.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import grad_norm

from gmrw.checkpoint import load_model
from gmrw.choices import LR_DECAYS, QUERY_MODES, check_choice
from gmrw.evaluation.scoring import track_and_score
from gmrw.losses import walk_loss
from gmrw.metrics import TapVidMetric
from gmrw.models import GMRW, compile_network, flush_denormals
from gmrw.tracking import TrackingOptions, resolve_options
from gmrw.training.curriculum import SmoothnessCurriculum

#: GMFlow's refinement factor: older checkpoints' ``net`` carries it, GMRW never used it.
_LEGACY_NET_KEYS = ("upsample_factor",)


def learning_rate_schedule(warmup_steps: int, decay: str, total_steps: int | None):
    """Multiplier of the base learning rate at each step: a linear warm-up over ``warmup_steps``,
    then constant or a cosine to 0 at ``total_steps`` (the run's max_steps)."""
    check_choice(decay, LR_DECAYS, "learning-rate decay")
    if decay == "cosine" and not total_steps:
        raise ValueError("optimizer.decay=cosine needs trainer.max_steps")

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if decay == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


class GMRWLitModule(pl.LightningModule):
    """Trains :class:`gmrw.models.GMRW` with the cycle (+ smoothness) loss.

    Args:
        net: GMRW constructor keyword arguments.
        optimizer: ``lr``, ``weight_decay``, ``scale_lr_with_world_size`` (AdamW), optional
            ``warmup_steps`` and ``decay`` (``constant`` or ``cosine``; see :func:`learning_rate_schedule`).
        smoothness_curriculum: :class:`SmoothnessCurriculum` fields.
        tracking: how the model tracks (:func:`gmrw.track` options: ``mode``, ``method``,
            ``window``, ``upsample_factor`` or ``processing_size``). Validation tracks this way, and
            checkpoints carry it, so ``gmrw.track(load_model(ckpt), video, queries)`` does too.
        validation_tracking: options that replace ``tracking``'s during validation only (e.g. a
            smaller ``processing_size`` to keep frequent validation rounds cheap); not recorded
            as the model's defaults.
        validation: how validation queries were sampled and are scored: ``query_mode`` and
            optional ``first_mode_rule``.
        init_from: weights-only initialisation (read by the train CLI, which skips it on resume).
        compile: compile the network's backbone and transformer with ``torch.compile`` when the
            trainer sets the module up (:func:`gmrw.models.compile_network`). Off by default: on the
            CPU it saves 8-10 % of an fp32 step but costs about a minute per input size, which
            short runs do not repay, and bf16 steps got slower (docs/performance.md, "torch.compile").
    """

    def __init__(
        self,
        net: dict,
        optimizer: dict,
        smoothness_curriculum: dict,
        validation: dict | None = None,
        init_from: str | None = None,
        tracking: dict | None = None,
        compile: bool = False,
        validation_tracking: dict | None = None,
    ):
        super().__init__()
        validation = dict(validation or {})
        tracking = {k: v for k, v in dict(tracking or {}).items() if v is not None}
        TrackingOptions(**tracking)  # fails now, naming the option, rather than at the first validation
        validation_tracking = {k: v for k, v in dict(validation_tracking or {}).items() if v is not None}
        net = {k: v for k, v in dict(net).items() if k not in _LEGACY_NET_KEYS}
        check_choice(validation.get("query_mode", "first"), QUERY_MODES, "validation query mode")
        # Plain containers only: checkpoints must stay loadable with torch's weights-only loader.
        self.save_hyperparameters(
            {
                "net": net,
                "optimizer": dict(optimizer),
                "smoothness_curriculum": dict(smoothness_curriculum),
                "validation": validation,
                "init_from": init_from,
                "tracking": tracking,
                "compile": bool(compile),
                "validation_tracking": validation_tracking,
            }
        )
        self.model = GMRW(**net)
        self.model.tracking_defaults = dict(tracking)
        resolve_options(self.model, **validation_tracking)  # fails now, as above
        self.validation_tracking = validation_tracking
        self.curriculum = SmoothnessCurriculum(**smoothness_curriculum)
        self.validation_options = validation
        # One per validation set; made in setup(), once the datamodule has named its sets.
        self.val_metrics = torch.nn.ModuleDict()

    def setup(self, stage: str) -> None:
        # Denormal softmax tails make CPU matmuls 70-100x slower (gmrw.models.cpu); the mode
        # only concerns CPU arithmetic, so GPU runs are unaffected.
        flush_denormals(True)
        if self.hparams.get("compile"):
            # In place, so parameter names (checkpoints, optimiser state) stay those of eager mode;
            # a second setup (validate, then fit) finds it compiled already.
            compile_network(self.model)
        if stage in ("fit", "validate"):
            datamodule = self.trainer.datamodule
            names = list(getattr(datamodule, "val_set_names", None) or ["val"])
            options = {k: v for k, v in self.validation_options.items() if k != "query_mode"}
            query_mode = self.validation_options.get("query_mode", "first")
            # Child modules, so they follow the device and sync across ranks.
            self.val_metrics = torch.nn.ModuleDict(
                {name: TapVidMetric(query_mode=query_mode, **options) for name in names}
            )

    # ------------------------------------------------------------------ training
    def smoothness_weight(self) -> float:
        return self.curriculum(self.global_step) if self.model.smoothness_loss else 0.0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        weight = self.smoothness_weight()
        out = walk_loss(self.model, batch["frames"], batch["affine_b2f"], smoothness_weight=weight)
        batch_size = batch["frames"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=batch_size)
        self.log("train/cycle_loss", out["cycle_loss"], batch_size=batch_size)
        self.log("train/accuracy", out["accuracy"], prog_bar=True, batch_size=batch_size)
        self.log("train/smoothness_loss", out["smoothness_loss"], batch_size=batch_size)
        self.log("train/smoothness_weight", weight, batch_size=batch_size)
        if out["accuracy_rows_sampled"] > 0:
            # above 4096 cells accuracy is estimated on a random subset of rows: say on how many
            self.log(
                "train/accuracy_rows_sampled", out["accuracy_rows_sampled"].float(), batch_size=batch_size
            )
        return out["loss"]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # The norm before clipping (Lightning calls this hook first), as the paper's runs logged it.
        # The learning rate is logged by LearningRateMonitor (callbacks: lr_monitor).
        norms = grad_norm(self, norm_type=2)
        if norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"])

    def configure_optimizers(self):
        options = self.hparams["optimizer"]
        lr = float(options["lr"])
        if options.get("scale_lr_with_world_size", True) and self.trainer is not None:
            # The paper's runs multiplied the base lr by the number of processes (4 GPUs → 1.6e-4).
            lr *= self.trainer.world_size
        optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=float(options["weight_decay"]))
        warmup = int(options.get("warmup_steps", 0) or 0)
        decay = str(options.get("decay", "constant"))
        if warmup == 0 and decay == "constant":
            return optimizer  # the paper's runs: a constant rate
        total = (
            int(self.trainer.max_steps) if self.trainer is not None and self.trainer.max_steps > 0 else None
        )
        schedule = learning_rate_schedule(warmup, decay, total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------------- validation
    def validation_step(
        self, batch: dict, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """Tracks one TAP-Vid example and scores it; returns ``{"tracks" (1, N, T, 2) (x, y) px,
        "occluded" (1, N, T)}`` so callbacks (the tracks video) can draw them without re-tracking."""
        metric = list(self.val_metrics.values())[dataloader_idx]
        # The model's own tracking defaults, exactly the call a user makes, unless the config
        # asks validation to track more cheaply (validation_tracking).
        tracks, occluded = track_and_score(self.model, batch, metric, **self.validation_tracking)
        return {"tracks": tracks, "occluded": occluded}

    def on_validation_epoch_end(self) -> None:
        for name, metric in self.val_metrics.items():
            scores = metric.compute()
            self.log(f"{name}/aj", float(scores["average_jaccard"]), sync_dist=False)
            self.log(f"{name}/delta_avg", float(scores["average_pts_within_thresh"]), sync_dist=False)
            self.log(f"{name}/oa", float(scores["occlusion_accuracy"]), sync_dist=False)
            metric.reset()

    # -------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning restores the step, optimizer and loops but not the global RNGs; keep them as
        # tensors and ints so the weights-only loader accepts the file.
        name, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["gmrw_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("gmrw_rng")
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        python_state = state["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))

    def load_pretrained(self, checkpoint: str) -> None:
        """Weights only, from a gmrw ``.ckpt`` or the paper's released ``.pth`` (strict)."""
        source = load_model(checkpoint)
        self.model.load_state_dict(source.state_dict(), strict=True)
