"""Soundness of the exact 1-NN radius at every scale (theory.nn_exact): queries far from the data,
data scaled by 1e-10 .. 1e6 (R(cX, cq) = c R(X, q)), and duplicated training points under two
labels (the tie rule)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from theory.nn_exact import exact_1nn, robust_radius
from tests.test_nn_exact import brute_force_2d


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_far_queries_match_brute_force(norm):
    """Queries at norm 1e5 .. 1e6 from data of scale 1: radius equal to the 2-D vertex enumeration
    to 1e-9 relative (an absolute slack in the active-set polish kept a sub-optimal point)."""
    rng = np.random.default_rng(7)
    for trial in range(6):
        n = 6
        tx = rng.uniform(-2, 2, size=(n, 2))
        ty = np.array([0, 1, 0, 1, 2, 0])
        ang = rng.uniform(0, 2 * np.pi, size=4)
        mag = 10.0 ** rng.uniform(5, 6, size=4)
        q = np.stack([np.cos(ang), np.sin(ang)], 1) * mag[:, None]
        r = robust_radius(q, tx, ty, norm)[0]
        for i in range(len(q)):
            ref = brute_force_2d(q[i], tx, ty, norm)
            assert r[i] == pytest.approx(ref, rel=1e-9), (trial, i, r[i], ref)


def _gauss(seed, n, dim):
    rng = np.random.default_rng(seed)
    tx = rng.normal(size=(n, dim))
    ty = rng.integers(0, 3, size=n)
    ty[0], ty[1] = 0, 1
    return tx, ty, rng.normal(size=(5, dim))


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_tiny_scale_is_not_zero(norm):
    """Data and queries scaled by 1e-10: the radii scale by 1e-10 (absolute solver tolerances
    returned 0)."""
    tx, ty, q = _gauss(3, 30, 6)
    r1 = robust_radius(q, tx, ty, norm)[0]
    r2 = robust_radius(q * 1e-10, tx * 1e-10, ty, norm)[0]
    assert np.all(r1 > 0)
    np.testing.assert_allclose(r2, r1 * 1e-10, rtol=1e-7)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), log_c=st.floats(-10, 6), dim=st.integers(1, 5),
       norm=st.sampled_from(["2", "inf"]))
def test_radius_is_homogeneous(seed, log_c, dim, norm):
    """R(cX, cq) = c R(X, q) for c in 1e-10 .. 1e6 (to 1e-7 relative)."""
    c = 10.0 ** log_c
    tx, ty, q = _gauss(seed, 12, dim)
    r1 = robust_radius(q, tx, ty, norm)[0]
    r2 = robust_radius(q * c, tx * c, ty, norm)[0]
    np.testing.assert_allclose(r2, r1 * c, rtol=1e-7, atol=0)


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_far_queries_equal_the_normalised_problem(norm):
    """R(X, q) = s R((X - q) / s, 0) with s = ||q||: queries at norm 1e5 .. 1e6 from unit-scale
    data in 4 .. 30 dimensions agree with the translated, rescaled problem to 1e-8 relative
    (the old active-set polish rejected the optimum by an absolute 1e-15 slack: up to ~1e-5 off)."""
    rng = np.random.default_rng(0)
    for trial in range(8):
        dim = int(rng.integers(4, 30))
        tx = rng.normal(size=(60, dim))
        ty = rng.integers(0, 3, size=60)
        q = rng.normal(size=(4, dim))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        q *= 10 ** rng.uniform(5, 6, size=(4, 1))
        r = robust_radius(q, tx, ty, norm)[0]
        for i, qi in enumerate(q):
            s = np.linalg.norm(qi)
            ref = s * robust_radius(np.zeros((1, dim)), (tx - qi) / s, ty, norm)[0][0]
            assert r[i] == pytest.approx(ref, rel=1e-8), (trial, i)
