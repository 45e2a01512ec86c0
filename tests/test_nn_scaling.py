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


# ---- exact duplicates on float data (Levina–Bickel, exact k-NN distances) --------------------

def _mnist_like(n: int, seed: int = 0) -> np.ndarray:
    """n 28x28 images on a 6-dimensional smooth manifold, quantised to uint8 and stored as
    float32/255 like MNIST in most loaders (so ||q||^2 is large next to the duplicate's 0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28] / 27.0
    z = rng.random((n, 6))
    img = (np.sin(3 * xx[None] * (1 + z[:, 0, None, None]) + 6 * z[:, 1, None, None])
           * np.cos(3 * yy[None] * (1 + z[:, 2, None, None]) + 6 * z[:, 3, None, None])
           * (0.5 + z[:, 4, None, None]) + z[:, 5, None, None])
    u8 = np.clip(np.round(127.5 + 80 * img), 0, 255).astype(np.uint8)
    return (u8.reshape(n, -1).astype(np.float32) / np.float32(255.0))


def _brute_force_knn(x: np.ndarray, k: int) -> np.ndarray:
    """Reference: every pairwise distance as sqrt(sum of squared differences) in float64."""
    f = x.reshape(len(x), -1).astype(np.float64)
    d = np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :k]


def test_knn_distances_are_exact_for_duplicates_in_float32_data():
    """A duplicate row must be at distance exactly 0 (the Gram-matrix formula gave ~1e-6)."""
    x = _mnist_like(300, seed=1)
    xd = np.vstack([x, x[:40]])
    got = knn_distances(xd, 5)
    ref = _brute_force_knn(xd, 5)
    assert np.all(got[:40, 0] == 0.0) and np.all(got[300:, 0] == 0.0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0.0)


def test_levina_bickel_drops_exact_duplicates_in_float32_data():
    """300 injected exact duplicates change nothing: they are dropped (and counted) before the
    estimate; the estimate equals a brute-force reference on the unique rows (rel. 1e-9)."""
    from theory.intrinsic_dim import levina_bickel_report

    x = _mnist_like(1200, seed=2)
    rng = np.random.default_rng(3)
    dup = x[rng.choice(len(x), 300, replace=False)]
    xd = np.vstack([x, dup])[rng.permutation(1500)]
    clean = levina_bickel(x, 10, 20)
    with_dups = levina_bickel(xd, 10, 20)
    assert math.isclose(with_dups, clean, rel_tol=1e-9), (clean, with_dups)
    rep = levina_bickel_report(xd, 10, 20)
    assert rep.duplicates_dropped == 300 and rep.points_used == 1200
    knn = _brute_force_knn(x, 20)
    ref = np.mean([1.0 / np.mean(1.0 / levina_bickel_pointwise(knn, k)) for k in range(10, 21)])
    assert math.isclose(clean, ref, rel_tol=1e-9), (clean, ref)


def test_nearest_neighbor_finds_the_exact_duplicate():
    """The query's own copy (distance 0) must win over a near neighbour in float32 data."""
    from theory.knn import nearest_neighbor

    x = _mnist_like(500, seed=4)
    q = x[::7].copy()
    dist, idx = nearest_neighbor(q, x)
    assert np.all(dist == 0.0)
    assert np.array_equal(x[idx], q)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 40), dim=st.integers(1, 30), k=st.integers(1, 5), dups=st.integers(0, 10),
       scale=st.sampled_from([1e-3, 1.0, 255.0, 1e6]), norm=st.sampled_from(["2", "inf"]),
       seed=st.integers(0, 2 ** 31 - 1))
def test_knn_distances_equal_brute_force_with_duplicates(n, dim, k, dups, scale, norm, seed):
    """Exact k-NN distances on float32 data of any scale with injected exact duplicates: equal to
    a direct brute force (relative 1e-12), and 0.0 exactly for every duplicate."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, dim)) * scale).astype(np.float32)
    x = np.vstack([x, x[rng.integers(0, n, dups)]]) if dups else x
    k = min(k, len(x) - 1)
    got = knn_distances(x, k, norm=norm)
    f = x.astype(np.float64)
    diff = f[:, None, :] - f[None, :, :]
    d = np.abs(diff).max(axis=2) if norm == "inf" else np.sqrt((diff ** 2).sum(axis=2))
    np.fill_diagonal(d, np.inf)
    ref = np.sort(d, axis=1)[:, :k]
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0.0)
    assert np.array_equal(got == 0.0, ref == 0.0)
