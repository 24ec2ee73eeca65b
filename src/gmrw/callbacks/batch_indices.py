"""Records which dataset items each rank trained on: for checking data sharding and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl


class BatchIndexRecorder(pl.Callback):
    """Appends ``{"step": s, "index": [...]}`` lines to ``<output_dir>/batch_indices/rank<r>.jsonl``
    for every training batch (each rank writes its own file)."""

    def __init__(self, output_dir: str):
        super().__init__()
        self.directory = Path(output_dir) / "batch_indices"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = {"step": trainer.global_step, "index": batch["index"].tolist()}
        with open(self.directory / f"rank{trainer.global_rank}.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")
