"""The smoothness-weight curriculum: a pure function of the optimisation step.

Being a function of ``trainer.global_step`` alone (which Lightning checkpoints), the weight is
restored exactly on resume with no state of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SmoothnessCurriculum:
    """0 until ``start_step``, linear to ``end_value`` at ``end_step``, constant after
    (the paper: 0 until 5k, 200 at 15k). With ``enabled=False`` the weight is ``constant_weight``."""

    enabled: bool = True
    start_step: int = 5_000
    end_step: int = 15_000
    start_value: float = 0.0
    end_value: float = 200.0
    constant_weight: float = 1.0
    # Added to the step before the schedule is read: a run that continues another (the paper's
    # Kinetics fine-tuning resumed its step counter at 141k) sees the weight the original would.
    step_offset: int = 0

    def __post_init__(self):
        if self.enabled and self.end_step <= self.start_step:
            raise ValueError(
                f"smoothness curriculum needs end_step > start_step, got {self.start_step} → {self.end_step}"
            )

    def __call__(self, step: int) -> float:
        if not self.enabled:
            return float(self.constant_weight)
        step = step + self.step_offset
        if step <= self.start_step:
            return float(self.start_value)
        if step >= self.end_step:
            return float(self.end_value)
        fraction = (step - self.start_step) / (self.end_step - self.start_step)
        return float(self.start_value + fraction * (self.end_value - self.start_value))
