"""``ProgressLog``: progress lines when stdout is not a terminal (the console run with stdout piped
is in ``test_end_to_end.py``)."""

from __future__ import annotations

import re
import sys

import pytest
import pytorch_lightning as pl
import torch

from gmrw.callbacks.progress_log import ProgressLog, format_duration

LINE = re.compile(
    r"^step (\d+)/(\d+) \(\d+%\) · loss (\d+\.\d{4}) · ([\d.e+-]+) s/step · ETA (\d+:\d\d:\d\d)$"
)


class Line(pl.LightningModule):
    """Regression of a constant: a known loss at every step."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return ((self.weight - batch) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.ones(64, 1), batch_size=1)


def _fit(callback: ProgressLog, max_steps: int, caplog) -> list[str]:
    trainer = pl.Trainer(
        max_steps=max_steps,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    with caplog.at_level("INFO", logger="gmrw.train"):
        trainer.fit(Line())
    return [r.getMessage() for r in caplog.records if r.name == "gmrw.train"]


def test_a_line_every_n_steps_and_at_the_end(caplog):
    lines = _fit(ProgressLog(every_n_steps=2, when="always"), max_steps=5, caplog=caplog)
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(int(m[1]), int(m[2])) for m in parsed] == [(2, 5), (4, 5), (5, 5)]
    # Loss (w - 1)^2 with w moving 0 → 0.2 → 0.36 → ...: the mean of steps 1-2 is (1 + 0.64) / 2.
    assert float(parsed[0][3]) == pytest.approx(0.82, abs=1e-4)
    assert float(parsed[1][3]) < float(parsed[0][3])
    assert all(float(m[4]) > 0 for m in parsed)
    assert parsed[-1][5] == "0:00:00"


def test_auto_writes_only_when_stdout_is_not_a_terminal(caplog, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert _fit(ProgressLog(every_n_steps=1, when="auto"), max_steps=2, caplog=caplog) == []
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert len(_fit(ProgressLog(every_n_steps=1, when="auto"), max_steps=2, caplog=caplog)) == 2
    caplog.clear()
    assert _fit(ProgressLog(every_n_steps=1, when="never"), max_steps=2, caplog=caplog) == []


def test_settings_are_checked():
    with pytest.raises(ValueError, match="every_n_steps must be a positive integer"):
        ProgressLog(every_n_steps=0)
    with pytest.raises(ValueError, match="choose one of \\['auto', 'always', 'never'\\]"):
        ProgressLog(when="sometimes")


def test_format_duration():
    assert format_duration(222) == "0:03:42"
    assert format_duration(3 * 3600 + 59.6) == "3:01:00"
