"""Spiral dataset of YRZSC Appendix A.0.1 (used for Figure 3).

x ~ U[0, 4.33 pi]; noise ~ U[0, 0.75] added independently to each coordinate;
negative class: (-x cos x + u1, x sin x + u2); positive class: (-x cos x + u1, -x sin x + u2).
The text says "uniform(noise)" with "noise level 0.75 (uniform [0, 0.75])": we read it as
U[0, 0.75] per coordinate (not symmetric around 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import SPIRAL_NOISE_MAX, SPIRAL_T_MAX
from plumbing.validation import check_float, check_int


@dataclass(frozen=True)
class SpiralConfig:
    n_per_class: int = 200
    t_max: float = SPIRAL_T_MAX
    noise: float = SPIRAL_NOISE_MAX
    seed: int = 0

    def __post_init__(self):
        check_int("n_per_class", self.n_per_class, min_value=1)
        check_float("t_max", self.t_max, low=0.0, low_open=True)
        check_float("noise", self.noise, low=0.0)
        check_int("seed", self.seed, min_value=0)


def make_spiral(cfg: SpiralConfig = SpiralConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Points (2 * n_per_class, 2) float64 and labels in {-1, +1} (negatives first)."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_per_class
    out = []
    for sign in (1.0, -1.0):  # negative class: +x sin x; positive class: -x sin x
        x = rng.uniform(0.0, cfg.t_max, n)
        u = rng.uniform(0.0, cfg.noise, (n, 2))
        out.append(np.stack([-x * np.cos(x) + u[:, 0], sign * x * np.sin(x) + u[:, 1]], axis=1))
    pts = np.concatenate(out)
    labels = np.concatenate([-np.ones(n, np.int64), np.ones(n, np.int64)])
    return pts, labels
