"""P&L Theorem 1: exact worst-case robust accuracy (theory.hypercube_robustness), bullets 1 and 2
as hypothesis properties over (n, delta, eps, seed), and checks of exactness against brute force."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from theory.hypercube import TAG_TEST, TAG_TRAIN, HypercubeFamily, derive_key
from theory.hypercube_learners import (BayesRobust, HypercubeLearner, KNearestHamming,
                                       LinearSignXd, Memoriser, PhiOracle)
from theory.hypercube_robustness import (adversarial_points, candidate_points, evaluate,
                                         feature_space_attack, reachable_interval)

deltas = st.floats(0.01, 0.99)
epss = st.floats(0.0, 0.999)


def _draw(n, delta, seed, m=300):
    fam = HypercubeFamily.for_n(n, delta=delta, phi_seed=seed)
    train = fam.sample(n, derive_key(seed, TAG_TRAIN))
    return fam, train, fam.sample(m, derive_key(seed, TAG_TEST))


@settings(max_examples=25)
@given(n=st.integers(1, 3000), delta=deltas, eps=epss, seed=st.integers(0, 2 ** 32))
def test_bullet1_oracle_survives_an_independent_attack(n, delta, eps, seed):
    """phi(sign(x_1..x_{d-1})) keeps every label under a feature-space attack at eps < 1 that does
    not go through :func:`evaluate` (which, for a learner declaring no x_d breakpoints, sets
    robust = clean by construction, so checking ev.robust alone would be a tautology)."""
    fam, train, test = _draw(n, delta, seed, m=150)
    ok = feature_space_attack(PhiOracle(fam), test.features(), test.y, eps,
                              np.random.default_rng(seed % 2 ** 32), n_random=8)
    assert ok.all()


def test_feature_space_attack_catches_what_the_evaluator_trusts():
    """The attack can fail: at eps = 1 it reaches sign(0) on a robust coordinate (every point is
    broken); and a learner that secretly reads x_d but declares no breakpoints is scored fully
    robust by :func:`evaluate` while the attack breaks it (the evaluator's exactness rests on the
    declared breakpoints; the attack checks the oracle without trusting them)."""
    fam, train, test = _draw(100, 0.1, 3, m=300)
    X, y = test.features(), test.y
    rng = np.random.default_rng(0)
    assert not feature_space_attack(PhiOracle(fam), X, y, 1.0, rng, n_random=2).any()

    class SneakyOracle(PhiOracle):
        def predict(self, patterns, xd):
            out = super().predict(patterns, xd)
            return np.where(np.abs(np.asarray(xd)) < 0.05, -out, out).astype(np.int8)

    sneaky = SneakyOracle(fam)
    assert evaluate(sneaky, test, 0.1).robust.all()                     # trusts the declaration
    assert feature_space_attack(sneaky, X, y, 0.1, rng).mean() < 0.5   # the attack does not


@settings(max_examples=25)
@given(n=st.integers(1, 3000), delta=deltas, eps=epss, seed=st.integers(0, 2 ** 32))
def test_bullet2_linear_exact(n, delta, eps, seed):
    """sign(x_d) has test accuracy exactly 1; its robust accuracy is exactly 1[eps < delta]
    (ties sign(0) = 0 are errors), and the proof's attack gives the same."""
    fam, train, test = _draw(n, delta, seed)
    ev = evaluate(LinearSignXd().fit(train), test, eps)
    assert ev.clean_accuracy == 1.0
    assert ev.robust_accuracy == (1.0 if eps < delta else 0.0)
    assert ev.zero_attack_accuracy == (1.0 if eps < delta else 0.0)


class ThresholdLearner(HypercubeLearner):
    """A user plug-in: memorised label if seen and x_d > t, else -sign(x_d - s): breakpoints at
    t and s (exercises the generic candidate-point evaluator)."""
    name = "threshold"

    def __init__(self, t, s):
        self.t, self.s = t, s
        self.xd_breakpoints = (t, s)
        self.mem = Memoriser(fallback="constant")

    def fit(self, train):
        self.mem.fit(train)
        return self

    def predict(self, patterns, xd):
        xd = np.asarray(xd, dtype=float)
        seen_lab = self.mem.predict(patterns, xd)
        seen = self.mem.seen(patterns)
        other = (-np.sign(xd - self.s)).astype(np.int8)
        return np.where(seen & (xd > self.t), seen_lab, other).astype(np.int8)


@settings(max_examples=15)
@given(delta=deltas, eps=epss, t=st.floats(-0.9, 0.9), s=st.floats(-0.9, 0.9),
       seed=st.integers(0, 2 ** 32), clip=st.booleans())
def test_exact_equals_dense_grid(delta, eps, t, s, seed, clip):
    """The candidate-point worst case equals the worst case over a dense grid of x_d' in the
    reachable interval (grid of 401 points, the ends, and each breakpoint b with b +- 1e-9, so
    every piece of the interval wider than 1e-9 is visited)."""
    fam = HypercubeFamily(d=5, delta=delta, phi_seed=seed)     # small d: many seen points
    train = fam.sample(12, derive_key(seed, TAG_TRAIN))
    test = fam.sample(200, derive_key(seed, TAG_TEST))
    lr = ThresholdLearner(t, s).fit(train)
    ev = evaluate(lr, test, eps, clip=clip)
    for v in (delta, -delta):
        idx = np.flatnonzero(test.xd == v)
        if idx.size == 0:
            continue
        lo, hi = reachable_interval(v, eps, clip)
        near = [b + e for b in (t, s) for e in (-1e-9, 0.0, 1e-9)]
        grid = np.unique(np.concatenate([np.linspace(lo, hi, 401), [lo, hi],
                                         [g for g in near if lo <= g <= hi]]))
        ok = np.ones(idx.size, dtype=bool)
        for g in grid:
            ok &= lr.predict(test.patterns[idx], np.full(idx.size, g)) == test.y[idx]
        assert np.array_equal(ok, ev.robust[idx])


@settings(max_examples=15)
@given(n=st.integers(1, 400), delta=deltas, eps=epss, seed=st.integers(0, 2 ** 32),
       fallback=st.sampled_from(Memoriser.FALLBACKS))
def test_witness_and_random_attacks(n, delta, eps, seed, fallback):
    """Exactness both ways, in the full d-dimensional input space: (a) every point scored as not
    robust has a witness within the l2 ball (and the domain) that the learner gets wrong;
    (b) random perturbations in the ball (direction uniform, radius eps, plus the proof's attack)
    never break a point scored as robust."""
    fam = HypercubeFamily(d=6, delta=delta, phi_seed=seed)
    train = fam.sample(n, derive_key(seed, TAG_TRAIN))
    test = fam.sample(150, derive_key(seed, TAG_TEST))
    for lr in (Memoriser(fallback=fallback, coin_key=seed), LinearSignXd(), BayesRobust(seed),
               KNearestHamming(3)):
        lr.fit(train)
        ev = evaluate(lr, test, eps)
        X = test.features()
        Xa = adversarial_points(test, ev.witness_xd)
        bad = ~ev.robust
        assert np.all(np.linalg.norm(Xa - X, axis=1) <= eps + 1e-12)
        assert np.all(np.abs(Xa) <= 1.0)
        assert np.all(lr.predict_features(Xa[bad]) != test.y[bad])
        rng = np.random.default_rng(seed % 2 ** 32)
        good = np.flatnonzero(ev.robust)
        for _ in range(20):
            r = rng.normal(size=(good.size, X.shape[1]))
            r *= eps / np.linalg.norm(r, axis=1, keepdims=True)
            Xp = np.clip(X[good] + r, -1, 1)
            assert np.all(lr.predict_features(Xp) == test.y[good])
        assert np.all(ev.zero_attack >= ev.robust)      # the proof's attack is weaker


def test_candidate_points_and_interval():
    assert reachable_interval(0.9, 0.5) == (0.4, 1.0)
    assert reachable_interval(0.9, 0.5, clip=False) == (0.4, 1.4)
    c = candidate_points(-0.1, 0.3, (0.0, 0.5))
    assert c.tolist() == pytest.approx([-0.1, -0.05, 0.0, 0.15, 0.3])
    assert candidate_points(0.2, 0.2, (0.0,)).tolist() == [0.2]


def test_evaluate_bad_input():
    fam, train, test = _draw(10, 0.5, 0)
    lr = LinearSignXd().fit(train)
    with pytest.raises(ValueError, match=r"eps must be in \[0.0, 1.0\)"):
        evaluate(lr, test, 1.0)
    with pytest.raises(ValueError, match="eps"):
        evaluate(lr, test, -0.1)
    with pytest.raises(TypeError, match="learner must be"):
        evaluate(object(), test, 0.1)
