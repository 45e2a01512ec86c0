"""Exact robust radius of l2-metric 1-NN (theory.nn_exact): brute force in 1-D and 2-D, minimality
against random and projected-gradient perturbations, the half-gap certificate as a lower bound."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from plumbing.validation import check_norm
from theory.nn_certificate import certified_radius_1nn
from theory.nn_exact import exact_1nn, robust_accuracy, robust_radius
from theory.nn_exact_reference import _region_distance

TOL = 1e-6  # radius / tie tolerance for data of scale <= 5 (module FEAS_TOL is 1e-8 * scale)


def predict(points, tx, ty):
    """1-NN, l2 metric, lowest label on ties; also the margin d_other^2 - d_pred^2."""
    points = np.atleast_2d(points)
    d2 = ((points[:, None, :] - tx[None, :, :]) ** 2).sum(-1)
    labels = np.unique(ty)
    per = np.stack([d2[:, ty == c].min(1) for c in labels], 1)
    pred = labels[np.argmin(per, 1)]
    own = per[np.arange(len(points)), np.argmin(per, 1)]
    other = np.where(labels[None, :] == pred[:, None], np.inf, per).min(1)
    return pred, other - own


def pnorm(v, norm):
    return np.abs(v).max(-1) if norm == "inf" else np.sqrt((v * v).sum(-1))


# --------------------------------------------------------------------------- brute force in 2-D

def brute_force_2d(x, tx, ty, norm, box=None):
    """Exhaustive candidate enumeration: the distance from x to each polygon P_z (intersected with
    the box [lo, hi]^2 when given) is attained at x (if inside), at a vertex (intersection of two
    bisectors or box edges), at the projection onto a bisector (l2) or at a point of a bisector on
    a diagonal through x (l-inf, where the max switches)."""
    pred, _ = predict(x, tx, ty)
    y = pred[0]
    S = tx[ty == y]
    best = np.inf
    for z in tx[ty != y]:
        A = 2.0 * (S - z)
        b = (S * S).sum(1) - z @ z
        keep = np.abs(A).sum(1) > 0
        A, b = A[keep], b[keep]
        if box is not None:
            lo, hi = box
            A = np.vstack([A, [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]])
            b = np.concatenate([b, [hi, hi, -lo, -lo]])

        def feasible(p):
            return np.all(A @ p - b <= 1e-9 * (1 + np.abs(b)))

        cands = [x]
        for (a1, b1), (a2, b2) in itertools.combinations(zip(A, b), 2):
            M = np.array([a1, a2])
            if abs(np.linalg.det(M)) > 1e-12:
                cands.append(np.linalg.solve(M, [b1, b2]))
        for a, bb in zip(A, b):
            if norm == "2":
                cands.append(x - (a @ x - bb) / (a @ a) * a)
            else:
                for sg in itertools.product((1.0, -1.0), repeat=2):
                    sg = np.array(sg)
                    if abs(a @ sg) > 1e-12:
                        cands.append(x + (bb - a @ x) / (a @ sg) * sg)
        for p in cands:
            if feasible(p):
                best = min(best, float(pnorm(p - x, norm)))
    return best


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_2d_brute_force_vertex_enumeration(norm):
    rng = np.random.default_rng(1)
    for trial in range(25):
        n = int(rng.integers(3, 9))
        tx = rng.uniform(-2, 2, size=(n, 2))
        ty = rng.integers(0, 3, size=n)
        if len(np.unique(ty)) < 2:
            ty[0] = 1 - ty[1] if ty[1] < 2 else 0
        q = rng.uniform(-2.5, 2.5, size=(6, 2))
        r = robust_radius(q, tx, ty, norm)[0] if trial % 2 else \
            exact_1nn(q, tx, ty, norm, k_init=1, k_add=1).radius   # exercise the cutting planes
        for i in range(len(q)):
            assert r[i] == pytest.approx(brute_force_2d(q[i], tx, ty, norm), abs=TOL), (trial, i)


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_pruning_equals_solving_every_candidate(norm):
    """The pruned search returns the minimum over *all* candidates (solved one by one, no pruning)."""
    rng = np.random.default_rng(2)
    tx = rng.normal(size=(40, 5))
    ty = rng.integers(0, 3, size=40)
    q = rng.normal(size=(8, 5))
    res = exact_1nn(q, tx, ty, norm, k_near=1, k_init=1, k_add=1)
    assert (res.n_solved < res.n_candidates).any()          # the bound did prune something
    for i, x in enumerate(q):
        d2 = ((tx - x) ** 2).sum(1)
        S = tx[ty == res.prediction[i]]
        d2S = d2[ty == res.prediction[i]]
        full = min(_region_distance(x, tx[j], S, d2S, d2[j], norm, np.inf,
                                    np.arange(len(S)), len(S), 1e-12)[0]
                   for j in np.flatnonzero(ty != res.prediction[i]))
        assert res.radius[i] == pytest.approx(full, abs=1e-9)
        assert res.lower_bound[i] <= res.radius[i] + 1e-12


# --------------------------------------------------------------------------- 1-D closed form

@pytest.mark.parametrize("norm", ["2", "inf", 2, float("inf")])
def test_1d_closed_form(norm):
    """In 1-D the 1-NN label changes only at midpoints of sorted neighbours with different labels:
    radius = distance to the nearest such midpoint."""
    pts = np.array([0.0, 1.0, 1.5, 4.0, 7.0, 7.2, 9.0])
    lab = np.array([0, 0, 1, 1, 0, 1, 1])
    mids = [(pts[k] + pts[k + 1]) / 2 for k in range(len(pts) - 1) if lab[k] != lab[k + 1]]
    q = np.array([-3.0, 0.2, 1.1, 2.0, 3.0, 6.0, 7.05, 8.0, 12.0])
    r, adv = robust_radius(q[:, None], pts[:, None], lab, norm)
    expect = np.array([min(abs(x - m) for m in mids) for x in q])
    np.testing.assert_allclose(r, expect, atol=1e-9)
    np.testing.assert_allclose(np.abs(adv[:, 0] - q), expect, atol=1e-9)


# --------------------------------------------------------------------------- properties

def _instance(draw_seed, dim, n, integer):
    rng = np.random.default_rng(draw_seed)
    if integer:   # many exact ties and duplicates
        tx = rng.integers(-3, 4, size=(n, dim)).astype(float)
        q = rng.integers(-3, 4, size=(4, dim)) / 2.0
    else:
        tx = rng.normal(size=(n, dim))
        q = rng.normal(size=(4, dim))
    ty = rng.integers(0, 3, size=n)
    ty[0], ty[1] = 0, 1
    return tx, ty, q


def _pgd_max_margin(x, r, tx, ty, y, norm, rng, steps=60, starts=4):
    """Projected ascent of d_pred^2 - d_other^2 within the ball of radius r; returns the smallest
    margin d_other^2 - d_pred^2 seen (>0 means never flipped nor tied)."""
    worst = np.inf
    for _ in range(starts):
        p = x + (rng.uniform(-r, r, size=x.shape) if norm == "inf" else
                 rng.normal(size=x.shape) * r / math.sqrt(len(x)) / 2)
        if norm == "2" and np.linalg.norm(p - x) > r:
            p = x + (p - x) * r / np.linalg.norm(p - x)
        for _ in range(steps):
            d2 = ((tx - p) ** 2).sum(1)
            own = np.flatnonzero(ty == y)[np.argmin(d2[ty == y])]
            oth = np.flatnonzero(ty != y)[np.argmin(d2[ty != y])]
            worst = min(worst, d2[oth] - d2[own])
            g = 2.0 * (tx[oth] - tx[own])           # gradient of d_own^2 - d_oth^2
            step = r / 10
            if norm == "inf":
                p = np.clip(p + step * np.sign(g), x - r, x + r)
            else:
                gn = np.linalg.norm(g)
                p = p + step * g / (gn if gn > 0 else 1.0)
                dv = p - x
                nv = np.linalg.norm(dv)
                if nv > r:
                    p = x + dv * r / nv
        d2 = ((tx - p) ** 2).sum(1)
        worst = min(worst, d2[ty != y].min() - d2[ty == y].min())
    return worst


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), dim=st.integers(1, 4), n=st.integers(3, 10),
       integer=st.booleans(), norm=st.sampled_from(["2", "inf"]))
def test_radius_is_minimal_and_adversarial_flips(seed, dim, n, integer, norm):
    tx, ty, q = _instance(seed, dim, n, integer)
    res = exact_1nn(q, tx, ty, norm)
    pred_q, _ = predict(q, tx, ty)
    np.testing.assert_array_equal(res.prediction, pred_q)
    rng = np.random.default_rng(seed ^ 0x5EED)
    for i, x in enumerate(q):
        r, a = res.radius[i], res.adversarial[i]
        y = res.prediction[i]
        # the adversarial point is at the radius and flips the prediction or ties
        assert pnorm(a - x, norm) == pytest.approx(r, abs=TOL)
        pa, marg = predict(a, tx, ty)
        assert pa[0] != y or marg[0] <= TOL, (pa, marg)
        # the half-gap certificate (l2 metric) never exceeds the exact radius
        hg = float(certified_radius_1nn(*_class_gap(x, tx, ty, y)))
        assert hg == pytest.approx(res.half_gap_l2[i], abs=1e-12)
        assert r >= (hg if norm == "2" else hg / math.sqrt(dim)) - 1e-9
        assert res.lower_bound[i] <= r + 1e-12
        if r <= 1e-9:
            continue
        # nothing strictly inside (0.999 r) flips or ties: random points and projected ascent
        inner = 0.999 * r
        if norm == "inf":
            pts = x + rng.uniform(-inner, inner, size=(300, dim))
            pts[:100] = x + inner * rng.choice([-1.0, 1.0], size=(100, dim))
        else:
            v = rng.normal(size=(300, dim))
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            pts = x + v * inner * rng.uniform(0, 1, size=(300, 1)) ** (1 / dim)
            pts[:100] = x + v[:100] * inner
        pp, mm = predict(pts, tx, ty)
        assert np.all(pp == y) and np.all(mm > 0)
        assert _pgd_max_margin(x, inner, tx, ty, y, norm, rng) > 0


def _class_gap(x, tx, ty, y):
    d = np.sqrt(((tx - x) ** 2).sum(1))
    return np.array(d[ty == y].min()), np.array(d[ty != y].min())


def test_tie_at_query_gives_radius_zero_and_lowest_label():
    tx = np.array([[0.0], [2.0]])
    ty = np.array([1, 0])
    res = exact_1nn([[1.0]], tx, ty)
    assert res.prediction[0] == 0 and res.radius[0] == 0.0
    np.testing.assert_array_equal(res.adversarial[0], [1.0])


def test_one_label_is_infinitely_robust():
    r, adv = robust_radius([[0.3, 0.1]], [[0.0, 0.0], [1.0, 1.0]], [2, 2])
    assert r[0] == np.inf and np.isnan(adv).all()


def test_robust_accuracy_counts_correct_and_strictly_larger():
    assert robust_accuracy([0.5, 0.1, 0.3], [1, 1, 0], [1, 1, 1], 0.1) == pytest.approx(1 / 3)


@pytest.mark.parametrize("bad,exc", [("1", ValueError), (3, ValueError), (None, TypeError),
                                     (True, TypeError)])
def test_bad_norm(bad, exc):
    with pytest.raises(exc, match="norm"):
        robust_radius([[0.0]], [[0.0], [1.0]], [0, 1], bad)


@pytest.mark.parametrize("value,expect", [("2", "2"), (2, "2"), (2.0, "2"), ("inf", "inf"),
                                          (float("inf"), "inf"), (np.inf, "inf")])
def test_check_norm_normalises(value, expect):
    assert check_norm("norm", value) == expect


def test_bad_shapes_name_the_parameter():
    with pytest.raises(ValueError, match="train_y"):
        robust_radius([[0.0]], [[0.0], [1.0]], [0, 1, 1])
    with pytest.raises(ValueError, match="queries"):
        robust_radius([[0.0, 1.0]], [[0.0], [1.0]], [0, 1])
    with pytest.raises(ValueError, match="train_x"):
        robust_radius([[0.0]], [[np.nan], [1.0]], [0, 1])
    with pytest.raises(TypeError, match="train_y"):
        robust_radius([[0.0]], [[0.0], [1.0]], [0.5, 1])
