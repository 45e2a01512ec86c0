"""The ℓ∞-δ-robust distributions of theory.robust_distributions really have margin δ
(P&L Theorem 2's hypothesis): cross-label support points are > 2δ apart and the cell classifier
is constant on every δ-ball around a support point."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.robust_distributions import GridRobustDistribution, min_cross_label_distance, uniform_cube


@st.composite
def distributions(draw):
    d = draw(st.integers(1, 4))
    delta = draw(st.floats(0.02, 0.24))
    kmax = max(2, int(np.ceil(1 / (2 * delta))) - 1)
    while kmax > 2 and not 1 / kmax > 2 * delta:
        kmax -= 1
    k = draw(st.integers(2, min(kmax, 6)))
    classes = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 10 ** 6))
    return GridRobustDistribution(d=d, delta=delta, cells_per_axis=k, n_classes=classes, seed=seed)


@settings(max_examples=20)
@given(dist=distributions(), seed=st.integers(0, 10 ** 6))
def test_cross_label_separation_exceeds_two_delta(dist, seed):
    rng = np.random.default_rng(seed)
    x, y = dist.sample(400, rng)
    assert x.shape == (400, dist.d) and y.shape == (400,)
    assert np.all((x >= 0) & (x <= 1))
    assert np.all(dist.in_support(x))
    assert min_cross_label_distance(x, y) > 2 * dist.delta


@settings(max_examples=20)
@given(dist=distributions(), seed=st.integers(0, 10 ** 6))
def test_cell_classifier_is_robust_with_margin_delta(dist, seed):
    rng = np.random.default_rng(seed)
    x, y = dist.sample(100, rng)
    assert np.all(dist.robust_classifier(x) == y)
    # random perturbations of l-inf size <= delta, and all 2^d vertices of the delta-cube
    pert = rng.uniform(-dist.delta, dist.delta, size=(20, dist.d))
    verts = dist.delta * np.array(list(itertools.product((-1.0, 1.0), repeat=dist.d)))
    for p in np.vstack([pert, verts]):
        assert np.all(dist.robust_classifier(x + p) == y)


@pytest.mark.parametrize("delta", [0.05, 0.1, 0.2])
def test_band_is_exactly_delta_in_one_dimension(delta):
    # two cells with different labels: support = [0, 1/2 - delta) U (1/2 + delta, 1]
    for seed in range(50):
        dist = GridRobustDistribution(d=1, delta=delta, cells_per_axis=2, n_classes=2, seed=seed)
        if dist.cell_labels[0] != dist.cell_labels[1]:
            break
    else:  # pragma: no cover - 50 seeds always give two different labels
        raise AssertionError("no seed with two labels")
    pts = np.array([[0.5 - delta - 1e-6], [0.5 - delta + 1e-6], [0.5], [0.5 + delta + 1e-6], [0.0], [1.0]])
    assert dist.in_support(pts).tolist() == [True, False, False, True, True, True]
    rate = dist.acceptance_rate(np.random.default_rng(0), samples=200_000)
    assert abs(rate - (1 - 2 * delta)) < 4 * np.sqrt(0.25 / 200_000)


def test_separation_is_close_to_two_delta_not_larger():
    """The construction is not over-conservative: with many samples the gap approaches 2δ."""
    dist = GridRobustDistribution(d=1, delta=0.1, cells_per_axis=2, n_classes=2, seed=1)
    assert dist.cell_labels[0] != dist.cell_labels[1]
    x, y = dist.sample(5_000, np.random.default_rng(0))
    gap = min_cross_label_distance(x, y)
    assert 0.2 < gap < 0.2 + 1e-3


def test_uniform_special_case():
    dist = uniform_cube(3, 0.7)
    x, y = dist.sample(20_000, np.random.default_rng(1))
    assert np.all(y == 0)
    # mean and variance of U[0,1]: 1/2 and 1/12, 5 standard errors
    se_mean = np.sqrt(1 / 12 / len(x))
    assert np.all(np.abs(x.mean(axis=0) - 0.5) < 5 * se_mean)
    assert np.all(np.abs(x.var(axis=0) - 1 / 12) < 0.005)
    assert min_cross_label_distance(x, y) == np.inf


def test_same_seed_same_sample():
    dist = GridRobustDistribution(d=2, delta=0.1, cells_per_axis=3, seed=5)
    a = dist.sample(50, np.random.default_rng(3))
    b = dist.sample(50, np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(d=0, delta=0.1), "d must be"),
    (dict(d=2, delta=0.0), "delta must be"),
    (dict(d=2, delta=1.0), "delta must be"),
    (dict(d=2, delta=0.3, cells_per_axis=2), "cells_per_axis"),
    (dict(d=2, delta=0.1, cells_per_axis=0), "cells_per_axis"),
    (dict(d=2, delta=0.1, n_classes=0), "n_classes"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridRobustDistribution(**kwargs)


def test_bad_points():
    dist = GridRobustDistribution(d=2, delta=0.1)
    with pytest.raises(ValueError, match="columns"):
        dist.distance_to_other_label(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="n must be"):
        dist.sample(-1, np.random.default_rng(0))
