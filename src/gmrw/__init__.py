"""gmrw: self-supervised any-point tracking with a global-matching random walk."""

__version__ = "0.1.0"
