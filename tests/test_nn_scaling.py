"""P&L Section 12 / 9.4 (theory.nn_scaling, theory.intrinsic_dim): the Eq. (26) bounds on the
median nearest-neighbour distance (exact and Monte Carlo), intrinsic-dimension recovery by the
log-log slope and by Levina–Bickel, and the harmonic-sum argument (Eq. 21)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.intrinsic_dim import knn_distances, levina_bickel, levina_bickel_pointwise
from theory.nn_scaling import (centre_median_nn_distance, check_sizes, embedded_uniform, eq26_bounds,
                               exact_median_radius, harmonic_log_bounds, harmonic_sum, linear_log_fit,
                               median_quantile_interval, nn_distance_curve, random_orthonormal,
                               slope_intrinsic_dimension, unit_ball_volume)


@settings(max_examples=100)
@given(c=st.floats(1e-3, 1e3), d_star=st.floats(0.5, 60), n=st.integers(1, 10 ** 9))
def test_exact_median_within_eq26(c, d_star, n):
    rl, ru = eq26_bounds(c, d_star, n)
    r = exact_median_radius(c, d_star, n)
    assert rl <= r * (1 + 1e-12) and r <= ru * (1 + 1e-12)
    # and p_n(r*) = 1/2 exactly: 1 - (1 - c r^d)^n
    p = c * r ** d_star
    assert math.isclose(-math.expm1(n * math.log1p(-p)), 0.5, rel_tol=1e-9)


@pytest.mark.parametrize("d_star, n", [(2, 200), (3, 1000), (5, 2000)])
def test_monte_carlo_centre_median_within_eq26(d_star, n):
    rng = np.random.default_rng(d_star)
    samples = centre_median_nn_distance(n, d_star, 12, trials=400, rng=rng)
    c = unit_ball_volume(d_star)
    rl, ru = eq26_bounds(c, d_star, n)
    lo, hi = median_quantile_interval(samples)       # +-3 sd order-statistic interval
    r = exact_median_radius(c, d_star, n)
    assert r <= 0.5                                    # the ball stays inside the cube
    assert lo <= r <= hi
    assert hi >= rl and lo <= ru


def test_unit_ball_volume():
    assert math.isclose(unit_ball_volume(1), 2.0)
    assert math.isclose(unit_ball_volume(2), math.pi)
    assert math.isclose(unit_ball_volume(3), 4 * math.pi / 3)


def test_embedding_is_isometric():
    rng = np.random.default_rng(0)
    b = random_orthonormal(3, 20, rng)
    np.testing.assert_allclose(b @ b.T, np.eye(3), atol=1e-12)
    z = rng.random((10, 3))
    x = z @ b
    dz = np.linalg.norm(z[:, None] - z[None], axis=2)
    dx = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.testing.assert_allclose(dx, dz, atol=1e-12)


@pytest.mark.parametrize("d_star", [2, 3, 5])
def test_slope_and_levina_bickel_recover_d_star(d_star):
    """Tolerance 15% of d* (boundary effects of the cube bias both estimators low as d* grows)."""
    rng = np.random.default_rng(10 + d_star)
    b = random_orthonormal(d_star, 16, rng)
    train = embedded_uniform(4096, d_star, 16, rng, b)
    queries = embedded_uniform(300, d_star, 16, rng, b)
    sizes = [2 ** k for k in range(6, 13)]
    curve = nn_distance_curve(train, queries, sizes, "2")
    assert all(x > y for x, y in zip(curve.median, curve.median[1:]))
    est, fit = slope_intrinsic_dimension(sizes, curve.median)
    assert abs(est - d_star) <= 0.15 * d_star, est
    assert fit.r2 > 0.98
    lb = levina_bickel(train[:1500], 10, 20)
    assert abs(lb - d_star) <= 0.15 * d_star, lb


def test_levina_bickel_on_a_line_is_one_and_handles_duplicates():
    x = np.linspace(0, 1, 400)[:, None] * np.array([[1.0, 2.0, -1.0]])
    # random points on a line in R^3: the estimate is near 1
    pts = np.sort(np.random.default_rng(1).random(2000))[:, None] * np.array([[1.0, 2.0, -1.0]])
    assert abs(levina_bickel(pts, 10, 20) - 1.0) < 0.15
    knn = knn_distances(np.vstack([x[:5], x[:5]]), 3)
    m = levina_bickel_pointwise(knn, 3)
    assert np.all(np.isnan(m))                # zero distances (duplicates) are excluded


def test_slope_on_exact_power_law():
    sizes = [10, 100, 1000, 10000]
    r = [3.0 * n ** (-1 / 7.0) for n in sizes]
    est, fit = slope_intrinsic_dimension(sizes, r)
    assert math.isclose(est, 7.0, rel_tol=1e-9) and math.isclose(fit.r2, 1.0)
    lin = linear_log_fit(sizes, [5 - 0.2 * math.log(n) for n in sizes])
    assert math.isclose(lin.slope, -0.2) and math.isclose(lin.r2, 1.0)


@settings(max_examples=100)
@given(n1=st.integers(1, 10 ** 5), k=st.integers(0, 10 ** 5))
def test_harmonic_sum_between_log_bounds(n1, k):
    n2 = n1 + k
    s = harmonic_sum(n1, n2)
    lo, hi = harmonic_log_bounds(n1, n2)
    assert lo - 1e-12 <= s <= hi + 1e-12
    # so |sum - ln(n2/n1)| <= ln(n2/n1) - ln((n2+1)/(n1+1)) <= 1/n1
    assert abs(s - math.log(n2 / n1)) <= 1.0 / n1 + 1e-12


def test_harmonic_doubling_is_about_ln2():
    # Section 9.4: every doubling of n adds about ln 2 "useful-example" events
    vals = [harmonic_sum(n, 2 * n) for n in (10, 100, 1000, 10000)]
    assert all(abs(v - math.log(2)) < 1 / (2 * n) + 1e-9 for v, n in zip(vals, (10, 100, 1000, 10000)))
    assert abs(vals[-1] - math.log(2)) < 1e-4


def test_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        check_sizes([10, 10])
    with pytest.raises(ValueError, match="c must"):
        eq26_bounds(0.0, 2, 10)
    with pytest.raises(ValueError, match="n must"):
        exact_median_radius(1.0, 2, 0)
    with pytest.raises(ValueError, match="sizes must be <="):
        nn_distance_curve(np.zeros((5, 2)), np.zeros((2, 2)), [2, 10])
    with pytest.raises(ValueError, match="k must"):
        knn_distances(np.zeros((3, 2)), 3)
    with pytest.raises(ValueError, match="aggregate"):
        levina_bickel(np.random.default_rng(0).random((50, 2)), 5, aggregate="median")
