"""The arithmetic the model runs in while tracking.

``"fp32"`` (the default) runs everything in float32. ``"bf16"`` runs the CNN encoder of the global
match and the feature transformer, nearly all of a video's FLOPs (docs/performance.md, "Tracking
speed"), under bfloat16 autocast, and hands their outputs back in float32: the global match's
softmax, the read-outs at points and the learned sub-cell step (its maps and local softmaxes, where
the last pixel is decided) stay float32. ``"auto"`` is ``"bf16"`` where bfloat16 matmuls are fast
(a CPU with AMX tiles, :func:`gmrw.models.cpu.fast_bf16_matmul`; a CUDA GPU that supports bf16)
and ``"fp32"`` elsewhere: on x86 cores without AMX bf16 matmuls ran at 0.006-0.5x fp32's speed
(docs/performance.md, "Tracking in bfloat16").
"""

from __future__ import annotations

import contextlib

import torch

from gmrw.choices import TRACKING_PRECISIONS, check_choice
from gmrw.models.cpu import fast_bf16_matmul


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """``precision`` (``"fp32"``, ``"bf16"`` or ``"auto"``) on ``device`` → the autocast dtype of the
    encoder and transformer (None: float32 throughout). Raises ConfigError for another name."""
    check_choice(precision, TRACKING_PRECISIONS, "tracking precision")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    kind = torch.device(device).type
    if kind == "cpu":
        return torch.bfloat16 if fast_bf16_matmul() else None
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return None


def reduced_precision(device: torch.device | str, dtype: torch.dtype | None):
    """A context running ``device``'s matmuls and convolutions in ``dtype`` (autocast), or nothing
    for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
