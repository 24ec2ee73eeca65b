"""CPU floating-point mode for GMRW.

Softmax over thousands of cells (the global matching) and the swin mask's exp(-100) produce
probabilities and gradients below 1.2e-38, float32's smallest normal number. x86 CPUs handle
such *denormal* operands in microcode: a matmul that meets them runs 70-100x slower (measured
here: a 16384x256 by 256x1024 linear took 9.3 s instead of 0.14 s). Flushing denormals to zero
removes that cliff; it only changes values that are already below 1e-38, so no loss, flow or
track moves measurably (the reference parity tests pass with it on). GPUs flush at full speed
and need nothing.
"""

from __future__ import annotations

import torch


def flush_denormals(enabled: bool = True) -> bool:
    """Set the process-wide flush-denormals-to-zero mode of the CPU (torch.set_flush_denormal).

    gmrw's trainer, ``gmrw-eval`` and ``gmrw-track`` turn it on; call it yourself when you run
    the model on the CPU from a notebook. Returns False where the CPU does not support the mode.
    """
    return bool(torch.set_flush_denormal(enabled))
