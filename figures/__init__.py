"""Figures of the two papers regenerated as PNG from our results: ``python -m figures``."""
from .registry import figure, figures, render  # noqa: F401
