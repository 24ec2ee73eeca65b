"""Training objectives (plain torch): the random-walk cycle loss and flow smoothness.

``walk_loss(model, frames, affine_b2f, smoothness_weight)`` is the objective training minimises;
the rest are its parts.
"""

from gmrw.losses.objective import walk_loss
from gmrw.losses.random_walk import (
    affine_labels,
    cycle_loss,
    masked_nll,
    walk_accuracy,
    walk_probability_at,
    walk_terms,
)
from gmrw.losses.smoothness import edge_aware_smoothness

__all__ = [
    "affine_labels",
    "cycle_loss",
    "edge_aware_smoothness",
    "masked_nll",
    "walk_accuracy",
    "walk_loss",
    "walk_probability_at",
    "walk_terms",
]
