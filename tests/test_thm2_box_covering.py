"""Box covering of the proof of P&L Theorem 2 (theory.box_covering, supplementary Eqs. 9-20):
|B|, the centres, exact uniform coverage against Monte Carlo, the chain exact ≥ (16) ≥ (20), and
the Monte Carlo of the theorem at n = 37⌈1/δ⌉^d."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.box_covering import (bound_sample_size, box_centers, box_index, boxes_per_axis,
                                 coverage_bound, coverage_from_masses, coverage_monte_carlo,
                                 eq16_bound, n_boxes, simulate_theorem2, theorem2_sample_size,
                                 uniform_box_masses, uniform_coverage_exact, uniform_n_for_coverage)
from theory.robust_distributions import GridRobustDistribution, uniform_cube

deltas = st.floats(0.03, 0.97)


@pytest.mark.parametrize("delta, D", [(0.1, 10), (0.2, 5), (0.25, 4), (0.3, 4), (0.5, 2), (0.99, 2),
                                      (1 / 3, 3), (0.125, 8)])
def test_boxes_per_axis(delta, D):
    assert boxes_per_axis(delta) == D
    assert n_boxes(3, delta) == D ** 3
    assert theorem2_sample_size(2, delta) == 37 * D ** 2


@settings(max_examples=30)
@given(d=st.integers(1, 3), delta=st.floats(0.08, 0.97), seed=st.integers(0, 10 ** 6))
def test_centres_cover_the_cube_and_box_index_matches(d, delta, seed):
    c = box_centers(d, delta)
    assert c.shape == (n_boxes(d, delta), d)
    x = np.random.default_rng(seed).random((300, d))
    x[:3] = [0.0] * d, [1.0] * d, [min(delta, 1.0)] * d      # corners and a face
    idx = box_index(x, delta)
    # each point lies in (the closed) box of its index: within delta/2 of its centre
    assert np.all(np.abs(x - c[idx]).max(axis=1) <= delta / 2 + 1e-12)
    # so two points with the same index are within delta (Eq. 14 >= Eq. 15)
    same = idx[:, None] == idx[None, :]
    dist = np.abs(x[:, None, :] - x[None, :, :]).max(axis=2)
    assert np.all(dist[same] <= delta + 1e-12)


@settings(max_examples=50)
@given(d=st.integers(1, 6), delta=deltas)
def test_uniform_masses_sum_to_one(d, delta):
    masses = uniform_box_masses(d, delta)
    assert sum(c for _, c in masses) == n_boxes(d, delta)
    assert math.isclose(sum(p * c for p, c in masses), 1.0, rel_tol=1e-9)


@settings(max_examples=60)
@given(d=st.integers(1, 6), delta=deltas, n=st.integers(1, 10 ** 6))
def test_chain_exact_ge_eq16_ge_eq20_uniform(d, delta, n):
    masses = uniform_box_masses(d, delta)
    exact = coverage_from_masses(masses, n)
    assert exact >= eq16_bound(masses, n) - 1e-12
    assert eq16_bound(masses, n) >= coverage_bound(d, delta, n) - 1e-12
    assert 0.0 <= exact <= 1.0 + 1e-12


@settings(max_examples=60)
@given(m=st.integers(1, 50), n=st.integers(1, 10 ** 5), seed=st.integers(0, 10 ** 6))
def test_chain_for_arbitrary_box_masses(m, n, seed):
    """Eqs. 15-20 hold for any masses summing to 1 (any distribution), not only uniform ones."""
    p = np.random.default_rng(seed).dirichlet(np.full(m, 0.3))
    exact = coverage_from_masses(p, n)
    assert exact >= eq16_bound(p, n) - 1e-12
    assert eq16_bound(p, n) >= 1 - m / (n * math.e) - 1e-12


@settings(max_examples=40)
@given(d=st.integers(1, 8), delta=deltas)
def test_sample_size_37_gives_99_percent(d, delta):
    n = theorem2_sample_size(d, delta)
    assert coverage_bound(d, delta, n) >= 0.99
    nb = bound_sample_size(d, delta)
    assert nb <= n
    assert coverage_bound(d, delta, nb) >= 0.99
    if nb > 1:
        assert coverage_bound(d, delta, nb - 1) < 0.99


@settings(max_examples=30)
@given(d=st.integers(1, 5), delta=deltas)
def test_uniform_n_for_coverage_is_minimal(d, delta):
    n = uniform_n_for_coverage(d, delta, 0.99)
    assert uniform_coverage_exact(d, delta, n) >= 0.99
    if n > 1:
        assert uniform_coverage_exact(d, delta, n - 1) < 0.99
    assert n <= theorem2_sample_size(d, delta)


@pytest.mark.parametrize("d, delta, n", [(1, 0.3, 3), (2, 0.2, 30), (3, 0.3, 40), (2, 0.45, 5)])
def test_monte_carlo_matches_exact_uniform_coverage(d, delta, n):
    dist = uniform_cube(d, delta)
    est = coverage_monte_carlo(dist.sample, d, delta, n, trials=100, n_test=200, seed=1)
    exact = uniform_coverage_exact(d, delta, n)
    # 4 standard errors (seeded, so deterministic)
    assert abs(est.mean - exact) <= 4 * est.stderr + 1e-9, (est, exact)


@settings(max_examples=5)
@given(d=st.integers(1, 3), delta=st.sampled_from([0.1, 0.2]), frac=st.sampled_from([0.05, 0.25, 1.0]),
       seed=st.integers(0, 1000))
def test_monte_carlo_coverage_at_least_bound_minus_interval(d, delta, frac, seed):
    dist = GridRobustDistribution(d=d, delta=delta, cells_per_axis=2, n_classes=2, seed=seed)
    n = max(1, int(frac * theorem2_sample_size(d, delta)))
    if n > 6000:
        n = 6000
    est = coverage_monte_carlo(dist.sample, d, delta, n, trials=6, n_test=300, seed=seed)
    _, hi = est.interval(3.0)
    assert hi + 1e-9 >= coverage_bound(d, delta, n)
    assert 0.0 <= est.mean <= 1.0


@pytest.mark.parametrize("d, delta", [(1, 0.1), (2, 0.2), (2, 0.1)])
def test_theorem2_at_37_boxes(d, delta):
    dist = GridRobustDistribution(d=d, delta=delta, cells_per_axis=2, n_classes=2, seed=3)
    n = theorem2_sample_size(d, delta)
    assert not dist.vacuous          # two classes, so CRA >= 0.99 is not trivial
    res = simulate_theorem2(dist.sample, d, delta, n, trials=3, n_test=300, seed=0)
    assert not res.vacuous
    assert res.certified_robust_accuracy.mean >= 0.99
    assert res.coverage.mean >= coverage_bound(d, delta, n) - 3 * res.coverage.stderr


@settings(max_examples=10)
@given(d=st.integers(1, 3), n=st.integers(1, 200), seed=st.integers(0, 1000))
def test_cra_ge_near_ge_coverage(d, n, seed):
    """Per test point: box hit ⇒ a training point within δ ⇒ correct and certified at δ/2 (the
    proof of Theorem 2); so the three Monte Carlo means are ordered."""
    dist = GridRobustDistribution(d=d, delta=0.15, cells_per_axis=3, n_classes=3, seed=seed)
    res = simulate_theorem2(dist.sample, d, 0.15, n, trials=2, n_test=200, seed=seed)
    assert res.certified_robust_accuracy.mean >= res.near_fraction.mean - 1e-12
    assert res.near_fraction.mean >= res.coverage.mean - 1e-12


def test_bad_input():
    with pytest.raises(ValueError, match="delta"):
        n_boxes(2, 0.0)
    with pytest.raises(ValueError, match="delta"):
        boxes_per_axis(1.0)
    with pytest.raises(ValueError, match="d must be"):
        n_boxes(0, 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        box_index(np.array([[1.5]]), 0.1)
    with pytest.raises(ValueError, match="n must be"):
        coverage_bound(2, 0.1, 0)


def test_pl_thm2_99_claim_uses_only_settings_with_two_classes(monkeypatch):
    """A setting whose cells all carry one label makes CRA = 1 trivially (every constant
    classifier is robust); the claim must never count one as evidence for Theorem 2."""
    import paper_checks.claims_thm2 as ct
    from paper_checks.registry import claims, run_claim

    seen = []
    real = ct.simulate_theorem2

    def spy(sampler, d, delta, n, **kw):
        res = real(sampler, d, delta, n, **kw)
        seen.append((d, delta, np.unique(sampler.__self__.cell_labels).size, res))
        return res

    monkeypatch.setattr(ct, "simulate_theorem2", spy)
    row = run_claim({c.id: c for c in claims()}["pl-thm2-99"])
    assert row["verdict"] == "PASS", row
    assert {d for d, *_ in seen} == {1, 2, 3}
    for d, delta, n_labels, res in seen:
        assert n_labels >= 2, (d, delta)


def test_one_class_setting_is_detected():
    """d = 1, two cells, seed 11: both cells get label 1, so the distribution is vacuous for
    Theorem 2; the simulation reports it (classes seen 1) and a non-vacuous redraw has 2."""
    from theory.robust_distributions import non_vacuous_grid

    dist = GridRobustDistribution(d=1, delta=0.1, cells_per_axis=2, n_classes=2, seed=11)
    assert dist.classes_present == 1 and dist.vacuous
    res = simulate_theorem2(dist.sample, 1, 0.1, 50, trials=2, n_test=100, seed=0)
    assert res.classes_seen == 1 and res.vacuous
    good = non_vacuous_grid(d=1, delta=0.1, cells_per_axis=2, n_classes=2, seed=11)
    assert good.classes_present == 2 and not good.vacuous and good.seed > 11
    res = simulate_theorem2(good.sample, 1, 0.1, 50, trials=2, n_test=100, seed=0)
    assert res.classes_seen == 2 and not res.vacuous
    with pytest.raises(ValueError, match="n_classes"):
        non_vacuous_grid(d=1, delta=0.1, cells_per_axis=1, n_classes=2)


def test_coverage_figure_interval_stays_in_unit_interval():
    """The thm2_coverage error bars: scipy Student-t interval over trials, intersected with
    [0, 1] (the old +-3 s.e. bar went above 1)."""
    from scipy import stats

    from figures.fig_thm2 import clipped_t_interval
    from theory.box_covering import Estimate

    lo, hi = clipped_t_interval(Estimate(0.98, 0.02, 3))
    assert hi == 1.0 and lo == pytest.approx(0.98 - stats.t.ppf(0.975, 2) * 0.02)
    lo, hi = clipped_t_interval(Estimate(0.5, 0.01, 10))
    assert (lo, hi) == pytest.approx((0.5 - stats.t.ppf(0.975, 9) * 0.01,
                                      0.5 + stats.t.ppf(0.975, 9) * 0.01))
    assert clipped_t_interval(Estimate(0.01, 0.05, 4))[0] == 0.0
