"""The box threat model of theory.nn_exact (perturbed input stays in [lo, hi]): 2-D brute force,
certificates (adversarial point inside the box at distance R, ties or flips against the full
training set; random and projected-ascent points inside the box at 0.999 R never do), box radius
>= unconstrained radius, and the tie rule with a training point duplicated under two labels."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from theory.nn_exact import TIE_AT_QUERY, exact_1nn, robust_accuracy, robust_radius
from tests.test_nn_exact import brute_force_2d, pnorm, predict

TOL = 1e-6


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_2d_box_brute_force(norm):
    rng = np.random.default_rng(11)
    for trial in range(20):
        n = int(rng.integers(3, 9))
        tx = rng.uniform(0, 1, size=(n, 2))
        ty = rng.integers(0, 3, size=n)
        ty[0], ty[1] = 0, 1
        q = rng.uniform(0, 1, size=(6, 2))
        q[0] = [0.0, rng.uniform()]                  # on the box boundary
        kw = {"k_init": 1, "k_add": 1} if trial % 2 else {}
        r = exact_1nn(q, tx, ty, norm, box=(0.0, 1.0), **kw).radius
        r0 = robust_radius(q, tx, ty, norm)[0]
        for i in range(len(q)):
            assert r[i] == pytest.approx(brute_force_2d(q[i], tx, ty, norm, box=(0.0, 1.0)),
                                         abs=TOL), (trial, i)
            assert r[i] >= r0[i] - 1e-12              # the box only removes perturbations


def _attack_inside(x, r, tx, ty, y, norm, rng, lo, hi, steps=50):
    """Smallest margin d_other^2 - d_pred^2 over random points and projected ascent inside the
    intersection of the radius-r ball and the box (> 0: nothing ties or flips)."""
    dim = len(x)
    worst = np.inf
    if norm == "inf":
        pts = x + rng.uniform(-r, r, size=(300, dim))
        pts[:100] = x + r * rng.choice([-1.0, 1.0], size=(100, dim))
    else:
        v = rng.normal(size=(300, dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        pts = x + v * r * rng.uniform(0, 1, size=(300, 1)) ** (1 / dim)
        pts[:100] = x + v[:100] * r
    pts = np.clip(pts, lo, hi)                # clipping towards x stays in the ball
    _, m = predict(pts, tx, ty)
    pp, _ = predict(pts, tx, ty)
    assert np.all(pp == y)
    worst = min(worst, m.min())
    for start in range(3):
        p = pts[start].copy()
        for _ in range(steps):
            d2 = ((tx - p) ** 2).sum(1)
            own = np.flatnonzero(ty == y)[np.argmin(d2[ty == y])]
            oth = np.flatnonzero(ty != y)[np.argmin(d2[ty != y])]
            worst = min(worst, d2[oth] - d2[own])
            g = tx[oth] - tx[own]
            if norm == "inf":
                p = np.clip(np.clip(p + r / 10 * np.sign(g), x - r, x + r), lo, hi)
            else:
                p = p + r / 10 * g / max(np.linalg.norm(g), 1e-300)
                for _ in range(20):   # alternate projections onto ball and box
                    dv = p - x
                    nv = np.linalg.norm(dv)
                    if nv > r:
                        p = x + dv * r / nv
                    p = np.clip(p, lo, hi)
                if np.linalg.norm(p - x) > r:
                    continue
        d2 = ((tx - p) ** 2).sum(1)
        if pnorm(p - x, norm) <= r:
            worst = min(worst, d2[ty != y].min() - d2[ty == y].min())
    return worst


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), dim=st.integers(1, 5), n=st.integers(3, 12),
       norm=st.sampled_from(["2", "inf"]))
def test_box_certificate(seed, dim, n, norm):
    rng = np.random.default_rng(seed)
    tx = rng.uniform(0, 1, size=(n, dim))
    ty = rng.integers(0, 3, size=n)
    ty[0], ty[1] = 0, 1
    q = rng.uniform(0, 1, size=(4, dim))
    q[0, 0] = 0.0
    res = exact_1nn(q, tx, ty, norm, box=(0.0, 1.0))
    for i, x in enumerate(q):
        r, a, y = res.radius[i], res.adversarial[i], res.prediction[i]
        assert np.all(a >= -1e-12) and np.all(a <= 1 + 1e-12)         # inside the box
        assert pnorm(a - x, norm) == pytest.approx(r, abs=TOL)
        pa, marg = predict(a, tx, ty)
        assert pa[0] != y or marg[0] <= TOL                            # ties or flips
        if r > 1e-9:
            assert _attack_inside(x, 0.999 * r, tx, ty, y, norm, rng, 0.0, 1.0) > 0


def test_box_bad_input():
    with pytest.raises(ValueError, match="box"):
        robust_radius([[2.0]], [[0.0], [1.0]], [0, 1], "2", box=(0.0, 1.0))
    with pytest.raises(ValueError, match="box"):
        robust_radius([[0.5]], [[0.0], [1.0]], [0, 1], "2", box=(1.0, 0.0))
    with pytest.raises(TypeError, match="box"):
        robust_radius([[0.5]], [[0.0], [1.0]], [0, 1], "2", box=0.5)


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_duplicate_under_two_labels_tie_rule(norm):
    """A training point duplicated under labels 0 and 1: near it 1-NN ties everywhere, the tie
    rule predicts 0, and the radius is 0 (a tie is an attack). Stated exception: the *prediction*
    (lowest label) does not change anywhere near that query, although R = 0; "R > eps" is
    "no tie and no flip within eps"."""
    tx = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0]])
    ty = np.array([1, 0, 1])
    q = np.array([[0.2, 0.1]])
    res = exact_1nn(q, tx, ty, norm)
    assert res.prediction[0] == 0 and res.radius[0] == 0.0 and res.status[0] == TIE_AT_QUERY
    assert robust_accuracy(res.radius, res.prediction, [0], 0.0) == 0.0
    pts = q + np.random.default_rng(0).uniform(-0.1, 0.1, size=(200, 2))
    pp, marg = predict(pts, tx, ty)
    assert np.all(pp == 0) and np.all(marg == 0)     # prediction constant: ties everywhere
    # a label-1 query beside it: its radius is the distance to where the duplicate ties
    q1 = np.array([[2.0, 0.0]])
    r1 = robust_radius(q1, tx, ty, norm)[0][0]
    assert r1 == pytest.approx(0.5, abs=1e-9)        # bisector of (0,0) and (3,0) at x = 1.5
    assert r1 == pytest.approx(brute_force_2d(q1[0], tx, ty, norm), abs=1e-9)


def test_misclassified_queries_get_radius_zero_unsolved():
    tx = np.array([[0.0], [1.0]])
    ty = np.array([0, 1])
    res = exact_1nn([[0.1], [0.9]], tx, ty, "2", labels=np.array([1, 1]))
    assert res.radius[0] == 0.0 and res.n_solved[0] == 0
    assert res.radius[1] == pytest.approx(0.4)


def test_fast_equals_reference_method():
    rng = np.random.default_rng(5)
    tx = rng.normal(size=(80, 6))
    ty = rng.integers(0, 4, size=80)
    q = rng.normal(size=(10, 6))
    for norm in ("2", "inf"):
        a = exact_1nn(q, tx, ty, norm)
        b = exact_1nn(q, tx, ty, norm, method="reference")
        np.testing.assert_allclose(a.radius, b.radius, rtol=1e-7)
        np.testing.assert_array_equal(a.prediction, b.prediction)
        assert np.all(a.lower_bound <= a.radius * (1 + 1e-12))
