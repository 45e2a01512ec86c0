"""Soundness of the exact 1-NN certificate (theory.nn_certificate; P&L Theorem 2 proof, YRZSC
Thm 4.2): no perturbation inside the certified radius changes the 1-NN prediction.

d = 1, 2: exhaustive grids over the whole perturbation ball. d = 3..8: adversarial search
(directions towards every other-label point and along every bisector normal, ball vertices,
random boundary points, and projected subgradient ascent on the margin). Tightness on a
two-point configuration shows the search and the radius are not vacuous.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.knn import pairwise_distances
from theory.nn_certificate import (certified_radius_1nn, certify_1nn, class_nearest_distances,
                                   nearest_by_label, one_nn_from_class_distances)

NORMS = ("inf", "2")


def _train(seed: int, n: int, d: int, k: int):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    y = rng.integers(0, k, size=n)
    y[0], y[1] = 0, 1                      # at least two labels
    return x, y, rng


def _margin(points, x, y, norm, k):
    """(prediction, b - a) of 1-NN at each row of ``points``."""
    cd = nearest_by_label(pairwise_distances(points, x, norm), y, k)
    pred, a, b = one_nn_from_class_distances(cd)
    return pred, b - a


def _certify_query(x, y, q, norm, k):
    cd = nearest_by_label(pairwise_distances(q[None], x, norm), y, k)
    pred, a, b = one_nn_from_class_distances(cd)
    return int(pred[0]), float(certified_radius_1nn(a, b)[0])


def _ball_grid(d: int, rho: float, norm: str, m: int) -> np.ndarray:
    """All offsets of an m^d grid over [-rho, rho]^d inside the ball, plus boundary points."""
    axis = np.linspace(-rho, rho, m)
    grid = np.stack(np.meshgrid(*([axis] * d), indexing="ij"), axis=-1).reshape(-1, d)
    if norm == "2":
        grid = grid[np.linalg.norm(grid, axis=1) <= rho]
        if d == 2:
            t = np.linspace(0, 2 * np.pi, 4 * m, endpoint=False)
            grid = np.vstack([grid, rho * np.stack([np.cos(t), np.sin(t)], axis=1)])
        else:
            grid = np.vstack([grid, [[-rho], [rho]]])
    return grid


@settings(max_examples=25)
@given(seed=st.integers(0, 10 ** 6), d=st.sampled_from([1, 2]), norm=st.sampled_from(NORMS),
       n=st.integers(2, 8), k=st.integers(2, 3))
def test_sound_exhaustive_grid_low_dim(seed, d, norm, n, k):
    x, y, rng = _train(seed, n, d, k)
    q = rng.random(d)
    pred, radius = _certify_query(x, y, q, norm, k)
    if radius <= 1e-9:
        return                              # nothing certified, nothing to check
    rho = radius * (1 - 1e-9)               # certified: radius > rho
    offsets = _ball_grid(d, rho, norm, 2001 if d == 1 else 161)
    p2, margin = _margin(q + offsets, x, y, norm, k)
    assert np.all(p2 == pred)
    assert np.all(margin > 0)               # strictly: no tie either


def _adversarial_candidates(q, x, y, pred, rho, norm, rng):
    d = len(q)
    cands = []
    same = x[y == pred]
    other = x[y != pred]
    for z in other:
        u = z - q
        cands.append(rho * (np.sign(u) if norm == "inf" else u / max(np.linalg.norm(u), 1e-300)))
        for w in same:
            v = z - w                        # normal of the bisector between w and z
            cands.append(rho * (np.sign(v) if norm == "inf" else v / max(np.linalg.norm(v), 1e-300)))
    if norm == "inf" and d <= 8:
        cands.extend(rho * np.asarray(s, dtype=float) for s in itertools.product((-1, 1), repeat=d))
    g = rng.standard_normal((200, d))
    if norm == "inf":
        g = rho * g / np.abs(g).max(axis=1, keepdims=True)
    else:
        g = rho * g / np.linalg.norm(g, axis=1, keepdims=True)
    cands.extend(g)
    return np.asarray(cands)


def _pgd(q, x, y, pred, rho, norm, k, steps=60):
    """Projected subgradient descent on b - a (nearest other minus nearest own distance)."""
    delta = np.zeros_like(q)
    step = rho / 10
    for _ in range(steps):
        p = q + delta
        dist = np.abs(x - p).max(axis=1) if norm == "inf" else np.linalg.norm(x - p, axis=1)
        i_own = np.argmin(np.where(y == pred, dist, np.inf))
        i_oth = np.argmin(np.where(y != pred, dist, np.inf))
        # gradient of dist(p, z_other) - dist(p, z_own) w.r.t. p
        def grad(z):
            u = p - z
            if norm == "inf":
                j = np.argmax(np.abs(u))
                e = np.zeros_like(u)
                e[j] = np.sign(u[j])
                return e
            return u / max(np.linalg.norm(u), 1e-300)
        g = grad(x[i_oth]) - grad(x[i_own])
        if norm == "inf":
            delta = np.clip(delta - step * np.sign(g), -rho, rho)
        else:
            delta = delta - step * g / max(np.linalg.norm(g), 1e-300)
            nrm = np.linalg.norm(delta)
            if nrm > rho:
                delta *= rho / nrm
    return delta


@settings(max_examples=25)
@given(seed=st.integers(0, 10 ** 6), d=st.integers(3, 8), norm=st.sampled_from(NORMS),
       n=st.integers(2, 10), k=st.integers(2, 4))
def test_sound_adversarial_search_high_dim(seed, d, norm, n, k):
    x, y, rng = _train(seed, n, d, k)
    # put the query near a training point so that a positive radius is common
    q = x[rng.integers(n)] + 0.05 * rng.standard_normal(d)
    pred, radius = _certify_query(x, y, q, norm, k)
    if radius <= 1e-9:
        return
    rho = radius * (1 - 1e-9)
    cands = _adversarial_candidates(q, x, y, pred, rho, norm, rng)
    cands = np.vstack([cands, _pgd(q, x, y, pred, rho, norm, k)[None]])
    p2, margin = _margin(q + cands, x, y, norm, k)
    assert np.all(p2 == pred)
    assert np.all(margin > 0)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("d", [1, 2, 5])
def test_radius_is_tight_on_the_segment(norm, d):
    """Query on the segment between a 0-point and a 1-point: moving (b-a)/2 + tiny towards the
    other point flips 1-NN, so the certified radius cannot be larger (the search is not vacuous)."""
    rng = np.random.default_rng(d)
    w, z = rng.random(d), rng.random(d)
    x, y = np.stack([w, z]), np.array([0, 1])
    q = w + 0.3 * (z - w)
    pred, radius = _certify_query(x, y, q, norm, 2)
    assert pred == 0 and radius > 0
    u = z - w
    if norm == "inf":
        # along the segment the l-inf distance changes at the rate of the largest coordinate
        step = u / np.abs(u).max()
    else:
        step = u / np.linalg.norm(u)
    p_in, _ = _margin((q + radius * (1 - 1e-6) * step)[None], x, y, norm, 2)
    p_out, _ = _margin((q + radius * (1 + 1e-6) * step)[None], x, y, norm, 2)
    assert p_in[0] == 0 and p_out[0] == 1


def test_certify_known_values_and_ties():
    pred = np.array([0, 1, 0, 1])
    a = np.array([0.1, 0.2, 0.3, 0.5])
    b = np.array([0.5, 0.4, 0.3, 1.5])
    labels = np.array([0, 1, 1, 1])
    res = certify_1nn(pred, a, b, labels, eps=0.1)
    np.testing.assert_allclose(res["radius"], [0.2, 0.1, 0.0, 0.5])
    # radius 0.1 is not > eps 0.1; the tie (radius 0) is never certified
    assert res["certified"].tolist() == [True, False, False, True]
    assert res["correct"].tolist() == [True, True, False, True]
    assert res["clean_accuracy"] == 0.75
    assert res["certified_robust_accuracy"] == 0.5


def test_certify_rejects_bad_input():
    with pytest.raises(ValueError, match="eps"):
        certify_1nn(np.zeros(2, int), np.zeros(2), np.ones(2), np.zeros(2, int), eps=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        certified_radius_1nn(np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        certified_radius_1nn(np.array([np.nan]), np.ones(1))
    with pytest.raises(ValueError, match="same length"):
        certify_1nn(np.zeros(3, int), np.zeros(2), np.ones(2), np.zeros(2, int), eps=0.1)
    with pytest.raises(ValueError, match="ref_labels"):
        class_nearest_distances(np.zeros((2, 2)), np.zeros((3, 2)), np.zeros(2, dtype=int))


@settings(max_examples=20)
@given(seed=st.integers(0, 10 ** 6), d=st.integers(1, 6), norm=st.sampled_from(("2", "inf", "angular")),
       k=st.integers(1, 4))
def test_class_nearest_distances_matches_dense(seed, d, norm, k):
    rng = np.random.default_rng(seed)
    x = rng.random((50, d)) + 0.01
    y = rng.integers(0, k, size=50)
    q = rng.random((13, d)) + 0.01
    dense = nearest_by_label(pairwise_distances(q, x, norm), y, k + 1)   # class k is empty -> inf
    fast = class_nearest_distances(q, x, y, norm, n_classes=k + 1)
    assert np.all(np.isinf(fast[:, k]))
    np.testing.assert_allclose(fast, dense, rtol=1e-9, atol=1e-9)
    pred, a, b = one_nn_from_class_distances(fast)
    full = pairwise_distances(q, x, norm)
    np.testing.assert_allclose(a, full.min(axis=1), rtol=1e-9, atol=1e-12)
    assert np.all(b >= a)


def test_certified_radius_is_a_lower_bound_not_exact():
    """Class 0 at (0, 0), class 1 at (2, 0), query (0, 1): a = 1, b = sqrt(5), certified radius
    (sqrt(5) - 1)/2 = 0.618, but the exact l2 flip radius is the distance to the bisector
    x_1 = 1, i.e. 1.0 (brute force over 3600 directions, tolerance 1e-3). Sound (no flip below
    the certified radius), and strictly below the exact radius: a lower bound, as reported."""
    ref = np.array([[0.0, 0.0], [2.0, 0.0]])
    lab = np.array([0, 1])
    x = np.array([[0.0, 1.0]])
    cd = class_nearest_distances(x, ref, lab, "2", 2)
    pred, a, b = one_nn_from_class_distances(cd)
    cert = certify_1nn(pred, a, b, np.array([0]), 0.0)["radius"][0]
    assert cert == pytest.approx((5 ** 0.5 - 1) / 2, abs=1e-12)
    ang = np.linspace(0, 2 * np.pi, 3600, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    radii = np.linspace(0, 2, 2001)
    flip = np.inf
    for r in radii:
        pts = x + r * dirs
        d0 = np.linalg.norm(pts - ref[0], axis=1)
        d1 = np.linalg.norm(pts - ref[1], axis=1)
        if np.any(d1 <= d0):
            flip = r
            break
    assert flip == pytest.approx(1.0, abs=1e-3)
    assert cert < flip - 0.3


# ---- bad input: norms, labels, non-numeric arrays (theory side) ------------------------------

def test_check_norm_convention():
    from plumbing.validation import check_norm

    for v in ("2", 2, 2.0, np.int64(2)):
        assert check_norm("norm", v) == "2"
    for v in ("inf", float("inf"), np.inf):
        assert check_norm("norm", v) == "inf"
    for bad in ("l2", "Inf", 1, 3.0, -np.inf, "angular"):
        with pytest.raises(ValueError, match=r"norm must be one of '2', 'inf'"):
            check_norm("norm", bad)
    for bad in (None, True, [2], object()):
        with pytest.raises(TypeError, match="norm must be one of"):
            check_norm("norm", bad)


def test_theory_functions_accept_numeric_norms():
    from theory.distance_classifier import certified_accuracy, class_distances
    from theory.knn import nearest_neighbor

    rng = np.random.default_rng(0)
    ref, lab = rng.random((20, 3)), rng.integers(0, 2, 20)
    q, qy = rng.random((5, 3)), rng.integers(0, 2, 5)
    for a, b in ((2, "2"), (np.inf, "inf"), (float("inf"), "inf")):
        np.testing.assert_array_equal(nearest_neighbor(q, ref, a)[0], nearest_neighbor(q, ref, b)[0])
        np.testing.assert_array_equal(class_nearest_distances(q, ref, lab, a, 2),
                                      class_nearest_distances(q, ref, lab, b, 2))
        np.testing.assert_array_equal(class_distances(q, ref, lab, a), class_distances(q, ref, lab, b))
        assert certified_accuracy(q, qy, ref, lab, [0.1], a)["norm"] == b


def test_bad_library_input_names_the_parameter():
    from theory.distance_classifier import certified_accuracy
    from theory.intrinsic_dim import levina_bickel
    from theory.knn import nearest_neighbor

    rng = np.random.default_rng(0)
    ref, lab = rng.random((20, 3)), rng.integers(0, 2, 20)
    with pytest.raises(TypeError, match="queries must be a numeric array"):
        nearest_neighbor("abc", ref)
    with pytest.raises(TypeError, match="references must be a numeric array"):
        nearest_neighbor(ref, [["a", "b", "c"]])
    with pytest.raises(ValueError, match="norm must be one of '2', 'inf'.*angular"):
        nearest_neighbor(ref, ref, "manhattan")
    with pytest.raises(TypeError, match="labels must be an integer array"):
        certify_1nn(np.array([0, 1]), np.zeros(2), np.ones(2), np.array([0.0, 1.0]), 0.1)
    with pytest.raises(TypeError, match="ref_labels must be an integer array"):
        class_nearest_distances(ref[:2], ref, lab.astype(float), "2")
    with pytest.raises(ValueError, match="ref_labels must have length 20"):
        class_nearest_distances(ref[:2], ref, lab[:5], "2")
    with pytest.raises(TypeError, match="test_y must be an integer array"):
        certified_accuracy(ref[:3], np.array([0.0, 1.0, 0.0]), ref, lab, [0.1], "2")
    with pytest.raises(ValueError, match="test_y must have length 3"):
        certified_accuracy(ref[:3], np.array([0, 1]), ref, lab, [0.1], "2")
    with pytest.raises(TypeError, match="eps_list"):
        certified_accuracy(ref[:3], np.array([0, 1, 0]), ref, lab, 0.1, "2")
    with pytest.raises(ValueError, match="norm must be one of"):
        certified_accuracy(ref[:3], np.array([0, 1, 0]), ref, lab, [0.1], 1)
    with pytest.raises(TypeError, match="x must be a numeric array"):
        levina_bickel(np.array([["a"] * 3] * 30), 5)
