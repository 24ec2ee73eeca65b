"""Training objectives (plain torch): the random-walk cycle loss and flow smoothness."""

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
    "walk_probability_at",
    "walk_terms",
]
