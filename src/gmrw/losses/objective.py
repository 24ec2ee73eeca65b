"""The training objective: the contrastive random walk f1 → f2 → f1' plus edge-aware smoothness.

The network (:class:`gmrw.models.GMRW`) gives the walk's two transitions; this module turns them
into the loss. The walk must come back to where the crop affine sends each cell of f1
(:func:`~gmrw.losses.random_walk.affine_labels`); the smoothness loss reads the flows implied by
the same transitions (each hop's expected target), so it costs no extra matching.
"""

from __future__ import annotations

import torch

from gmrw.losses.fine_walk import fine_walk_loss
from gmrw.losses.random_walk import affine_labels, masked_nll, walk_accuracy, walk_terms
from gmrw.losses.smoothness import edge_aware_smoothness
from gmrw.models.gmrw import GMRW
from gmrw.models.matching import cell_coords, flow_from_targets, resize_flow


def walk_loss(
    model: GMRW, frames: torch.Tensor, affine_b2f: torch.Tensor, smoothness_weight: float = 0.0
) -> dict[str, torch.Tensor]:
    """Cycle-consistency objective of one batch of training clips.

    Args:
        model: the network; its ``smoothness_loss`` and ``smoothness_edge_constant`` configure
            the smoothness term.
        frames: (B, 4, 3, H, W) in [0, 255] ordered [f1, f2, f2', f1']; the walk is f1 → f2 → f1'
            (f2' is not used, as in the paper's two-frame setting).
        affine_b2f: (B, 2, 3) maps a position in the forward crop to the backward crop
            (normalised, corner-aligned coordinates).
        smoothness_weight: weight of the smoothness term in ``loss``.

    Returns:
        0-d tensors: ``loss`` = cycle_loss + smoothness_weight * smoothness_loss, ``cycle_loss``,
        ``accuracy`` (percent of cells whose walk returns home), ``smoothness_loss`` (0 when the
        model's flag is off), ``accuracy_rows_sampled`` (0 when the accuracy is exact over every
        cell, else the number of rows it was estimated on). With the model's fine-match step on,
        ``loss`` also adds ``fine_match["weight"]`` × ``fine_loss`` (the fine walk,
        :func:`~gmrw.losses.fine_walk.fine_walk_loss`), and ``fine_accuracy``, ``fine_error``
        (fine cells) and ``fine_rows`` are returned too.
    """
    if frames.ndim != 5 or frames.shape[1] != 4:
        raise ValueError(f"expected frames (B,4,3,H,W) [f1,f2,f2',f1'], got {tuple(frames.shape)}")
    height, width = frames.shape[-2:]
    f1, f2, f1_back = frames[:, 0], frames[:, 1], frames[:, 3]
    (a1, a2, (h, w)), fine = model.walk_with_fine(f1, f2, f1_back)

    labels, mask = affine_labels(affine_b2f, h, w)
    # P[i, ℓ(i)] (B, N) and, for the smoothness loss, each hop's expected target (B, N, 2)
    coords = cell_coords(h, w, a1.device, a1.dtype) if model.smoothness_loss else None
    at_label, target1, target2 = walk_terms(a1, a2, labels, coords)
    cycle = masked_nll(at_label, mask)
    accuracy, rows_sampled = walk_accuracy(a1.detach(), a2.detach(), labels, mask, at_label=at_label.detach())

    smooth = torch.zeros((), device=frames.device)
    if model.smoothness_loss:
        flows = flow_from_targets(torch.cat((target1, target2)), h, w)  # weighted-sum flows
        flows = resize_flow(flows, (height, width))
        images = torch.cat((f1, f2)).float() * (2.0 / 255.0) - 1.0
        smooth = edge_aware_smoothness(flows, images, model.smoothness_edge_constant)
    out = {
        "loss": cycle + smoothness_weight * smooth,
        "cycle_loss": cycle,
        "accuracy": accuracy,
        "smoothness_loss": smooth,
        "accuracy_rows_sampled": torch.tensor(rows_sampled),
    }
    if fine is not None:
        settings = model.fine_match
        terms = fine_walk_loss(
            fine,
            a1,
            a2,
            (h, w),
            affine_b2f,
            (height, width),
            settings["radius"],
            settings["coarse_window"],
            settings["temperature"],
            settings["pixel_radius"],
        )
        out["loss"] = out["loss"] + settings["weight"] * terms["loss"]
        out.update({f"fine_{name}": value for name, value in terms.items()})
    return out
