"""Spiral dataset of YRZSC Appendix A.0.1."""
from __future__ import annotations

import numpy as np
import pytest

from theory.constants import SPIRAL_NOISE_MAX, SPIRAL_T_MAX
from theory.spiral import SpiralConfig, make_spiral


def test_spiral_parameters_and_geometry():
    cfg = SpiralConfig(n_per_class=500, seed=3)
    assert cfg.t_max == pytest.approx(4.33 * np.pi) and cfg.noise == 0.75
    x, y = make_spiral(cfg)
    assert x.shape == (1000, 2) and sorted(np.unique(y).tolist()) == [-1, 1]
    # radius from the noiseless curve: |(x0 - u1, x1 - u2)| = t, with u in [0, 0.75]^2,
    # so the norm lies within [t - 0.75*sqrt(2), t + 0.75*sqrt(2)] and never exceeds t_max + noise.
    assert np.linalg.norm(x, axis=1).max() <= SPIRAL_T_MAX + SPIRAL_NOISE_MAX * np.sqrt(2)
    # the two classes are mirror images in the second coordinate up to the noise: the mean of
    # x1 is ~ +E[t sin t] for negatives and ~ -E[t sin t] for positives (Monte Carlo, seed 3)
    t = np.linspace(0, SPIRAL_T_MAX, 200001)
    e = np.mean(t * np.sin(t))
    neg, pos = x[y == -1, 1], x[y == 1, 1]
    assert abs(neg.mean() - (e + 0.375)) < 0.6 and abs(pos.mean() - (-e + 0.375)) < 0.6


def test_spiral_seeded_and_validated():
    a, _ = make_spiral(SpiralConfig(n_per_class=10, seed=1))
    b, _ = make_spiral(SpiralConfig(n_per_class=10, seed=1))
    c, _ = make_spiral(SpiralConfig(n_per_class=10, seed=2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="n_per_class"):
        SpiralConfig(n_per_class=0)
    with pytest.raises(ValueError, match="noise"):
        SpiralConfig(noise=-1.0)
