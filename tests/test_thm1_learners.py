"""P&L Theorem 1, bullet 3: learners (theory.hypercube_learners) and the Monte Carlo
(theory.hypercube_simulation) against the bound 1/2 + n/2^d and the closed forms."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from theory.hypercube import TAG_TEST, TAG_TRAIN, HypercubeFamily, HypercubeSample, derive_key
from theory.hypercube_learners import (HammingIndex, HypercubeLearner, KNearestHamming,
                                       LearnerContext, Memoriser, learner_names, make_learner,
                                       register_learner)
from theory.hypercube_simulation import (Thm1Config, closed_form, mean_ci95, run_sweep,
                                         run_trials, SweepConfig, t_quantile_975, wilson_ci95)


def _agrees(mean, ci, expected, total_points):
    """Tolerance of the closed-form checks: the reported 95% interval widened by 1.7 (about 3.3
    standard errors, two-sided false-alarm rate ~0.1% per check, so the ~30 checks below stay
    reliable), and at least 3 binomial standard errors over all test points (the interval has
    width 0 when every trial gives the same value)."""
    hw = 1.7 * (ci[1] - ci[0]) / 2
    binom = 3 * (expected * (1 - expected) / total_points) ** 0.5
    return abs(mean - expected) <= max(hw, binom) + 1e-12


def _knn_reference(train_p, train_y, queries, k):
    """Brute force: distances to every training point (duplicates included), k-th smallest
    distance r_k, vote of all points within r_k, tie -> +1."""
    out = []
    for q in queries:
        dist = np.array([bin(int(q) ^ int(t)).count("1") for t in train_p])
        rk = np.sort(dist)[k - 1] if k <= dist.size else dist.max()
        vote = int(train_y[dist <= rk].sum())
        out.append(1 if vote >= 0 else -1)
    return np.array(out, dtype=np.int8)


@settings(max_examples=20)
@given(n=st.integers(1, 120), k=st.integers(1, 9), d=st.integers(3, 40),
       seed=st.integers(0, 2 ** 32))
def test_knn_matches_brute_force(n, k, d, seed):
    fam = HypercubeFamily(d=d, delta=0.2, phi_seed=seed)
    train = fam.sample(n, derive_key(seed, TAG_TRAIN))
    test = fam.sample(60, derive_key(seed, TAG_TEST))
    got = KNearestHamming(k).fit(train).predict(test.patterns, test.xd)
    assert np.array_equal(got, _knn_reference(train.patterns, train.y, test.patterns, k))


def test_knn_foreign_labels_and_shared_index():
    """Non-phi data (conflicting labels on one pattern) and index sharing give the brute force."""
    rng = np.random.default_rng(0)
    p = rng.integers(0, 16, 200).astype(np.uint64)
    y = rng.choice([-1, 1], 200).astype(np.int8)
    train = HypercubeSample(p, 0.1 * y, y, d=5)
    q = np.arange(16, dtype=np.uint64)
    idx = HammingIndex(train, kmax=7)
    for k in (1, 3, 7, 250):
        lr = KNearestHamming(k, index=idx).fit(train)
        assert np.array_equal(lr.predict(q, 0.0), _knn_reference(p, y, q, k))


def test_memoriser_and_fallbacks():
    fam = HypercubeFamily(d=6, delta=0.3, phi_seed=5)
    train = fam.sample(20, derive_key(1, TAG_TRAIN))
    q = np.arange(32, dtype=np.uint64)
    seen = np.isin(q, train.patterns)
    for fb in Memoriser.FALLBACKS:
        m = Memoriser(fallback=fb, coin_key=9).fit(train)
        pred = m.predict(q, 0.3)
        assert np.array_equal(pred[seen], fam.phi(q[seen]))       # seen -> stored label
        assert np.array_equal(m.seen(q), seen)
    m = Memoriser("sign_xd").fit(train)
    assert np.all(m.predict(q[~seen], -0.3) == -1) and np.all(m.predict(q[~seen], 0.0) == 0)
    assert np.all(Memoriser("constant", constant=-1).fit(train).predict(q[~seen], 0.3) == -1)
    with pytest.raises(ValueError, match="fallback must be one of"):
        Memoriser("nearest")
    with pytest.raises(RuntimeError, match="fit"):
        Memoriser().predict(q, 0.1)


@settings(max_examples=10)
@given(n=st.integers(1, 2000), delta=st.floats(0.01, 0.99), frac=st.floats(0.0, 1.0),
       seed=st.integers(0, 2 ** 32))
def test_every_learner_within_bound(n, delta, frac, seed):
    """At eps in [delta, 1) (the bound applies) every provided learner's mean exact robust
    accuracy is <= 1/2 + n/2^d plus its 95% interval half-width (5 trials x 400 points)."""
    eps = delta + frac * (0.999 - delta)
    res = run_trials(Thm1Config(n=n, delta=delta, eps=eps, trials=5, test_size=400, seed=seed))
    assert res["bound_applies"] and res["bound"] <= 0.5 + 1 / 128
    for row in res["learners"]:
        lo, hi = row["robust_accuracy_ci95"]
        if row["role"] == "bullet1":
            assert row["robust_accuracy"] == 1.0
            continue
        assert row["robust_accuracy"] <= res["bound"] + (hi - lo) / 2, row["name"]
        assert row["zero_attack_accuracy"] >= row["robust_accuracy"]


@pytest.mark.parametrize("n", [8, 64, 256, 1024])
def test_closed_forms_within_interval(n):
    """Memoriser (sign_xd and constant fallbacks), Bayes-robust and 1-NN agree with their closed
    forms within the interval (tolerance: see _agrees); d = 8 so that P(seen) spans 0.06 .. 1
    (seed 0, 30 trials x 500 test points)."""
    for fb, eps in (("sign_xd", 0.3), ("sign_xd", 0.1), ("constant", 0.3)):
        res = run_trials(Thm1Config(n=n, delta=0.2, eps=eps, d=8, trials=30, test_size=500,
                                    fallback=fb, learners=("memoriser", "bayes", "1nn"), seed=0))
        N = 30 * 500
        assert _agrees(res["p_seen_measured"], res["p_seen_measured_ci95"], res["p_seen"], N)
        for row in res["learners"]:
            cf = row["closed_form_robust_accuracy"]
            assert _agrees(row["robust_accuracy"], row["robust_accuracy_ci95"], cf, N), \
                (row["name"], fb, eps, row["robust_accuracy_ci95"], cf)
            assert _agrees(row["clean_accuracy"], row["clean_accuracy_ci95"],
                           row["closed_form_clean_accuracy"], N)


@pytest.mark.parametrize("n, d", [(1, 4), (8, 4), (300, 10), (2000, 10)])
def test_bayes_attains_the_attained_bound(n, d):
    """The Bayes-robust learner's mean exact robust accuracy equals 1/2 + P(seen)/2 (the bound it
    attains, Section 7 Eq. (8)) within the reported t-interval widened as in _agrees (40 trials x
    400 points), and it is below 1/2 + n/2^d. A learner with a wrong fallback (e.g. sign(x_d)) or
    a wrong P(seen) would miss it."""
    res = run_trials(Thm1Config(n=n, d=d, trials=40, test_size=400, seed=4, learners=("bayes",)))
    row = res["learners"][0]
    assert res["bound_tight"] == pytest.approx(0.5 + 0.5 * (1 - (1 - 2.0 ** -(d - 1)) ** n))
    assert _agrees(row["robust_accuracy"], row["robust_accuracy_ci95"], res["bound_tight"],
                   40 * 400), (row["robust_accuracy"], row["robust_accuracy_ci95"])
    assert res["bound_tight"] <= res["bound"] + 1e-15


def test_same_seed_same_numbers_other_seed_other_numbers():
    cfg = Thm1Config(n=300, d=10, trials=3, test_size=300, seed=4)
    a, b = run_trials(cfg), run_trials(cfg)
    assert a == b
    c = run_trials(Thm1Config(n=300, d=10, trials=3, test_size=300, seed=5))
    assert c["learners"] != a["learners"]


def test_user_plugin_learner_runs_in_simulation():
    class AlwaysPlus(HypercubeLearner):
        name = "always_plus"

        def fit(self, train):
            return self

        def predict(self, patterns, xd):
            return np.ones(np.size(patterns), dtype=np.int8)

    from theory import hypercube_learners as hl

    register_learner("always_plus", lambda ctx: AlwaysPlus())
    register_learner("broken", lambda ctx: object())
    try:
        assert "always_plus" in learner_names()
        res = run_trials(Thm1Config(n=100, trials=20, test_size=500, learners=("always_plus",)))
        row = res["learners"][0]
        assert row["robust_accuracy"] == row["clean_accuracy"]
        # phi is a fair coin: accuracy 1/2 on average over phi
        assert _agrees(row["robust_accuracy"], row["robust_accuracy_ci95"], 0.5, 20 * 500)
        with pytest.raises(TypeError, match="must return a HypercubeLearner"):
            make_learner("broken", LearnerContext(family=HypercubeFamily(d=4, delta=0.1),
                                                  coin_key=0))
    finally:
        hl._LEARNERS.pop("always_plus", None)
        hl._LEARNERS.pop("broken", None)


def test_sweep_shows_robust_learning_at_large_n(tmp_path):
    ck = tmp_path / "ck.json"
    base = Thm1Config(n=1, d=6, trials=4, test_size=200, learners=("bayes", "1nn", "memoriser"))
    res = run_sweep(SweepConfig(base=base, ns=(2, 32, 512)), checkpoint=ck)
    accs = [{r["name"]: r["robust_accuracy"] for r in p["learners"]} for p in res["points"]]
    assert accs[-1]["bayes"] == 1.0 and accs[-1]["1nn"] == 1.0   # n >> 2^(d-1) = 32
    assert accs[0]["bayes"] < 0.75
    again = run_sweep(SweepConfig(base=base, ns=(2, 32, 512)), checkpoint=ck)   # resumes
    assert again["points"] == res["points"]


def test_statistics_helpers_against_scipy():
    from scipy.special import stdtrit

    for dof in (1, 2, 3, 7, 19, 150, 201, 5000):
        assert t_quantile_975(dof) == pytest.approx(stdtrit(dof, 0.975), rel=1e-7)
    m, lo, hi = mean_ci95([0.4, 0.5, 0.6])
    assert m == pytest.approx(0.5) and hi - m == pytest.approx(stdtrit(2, 0.975) * 0.1 / 3 ** 0.5)
    lo, hi = wilson_ci95(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)


def test_closed_form_cases():
    cfg = Thm1Config(n=10, delta=0.2, eps=0.1)
    assert closed_form("linear", cfg, 0.3) == {"clean": 1.0, "robust": 1.0}
    assert closed_form("memoriser", cfg, 0.3)["robust"] == 1.0
    cfg = Thm1Config(n=10, delta=0.2, eps=0.2)
    assert closed_form("memoriser", cfg, 0.3)["robust"] == 0.3
    assert closed_form("knn", cfg, 0.3) is None


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(n=0), ValueError, "n must be >= 1"), (dict(n=10, delta=1.5), ValueError, "delta"),
    (dict(n=10, eps=1.0), ValueError, "eps"), (dict(n=10, trials=0), ValueError, "trials"),
    (dict(n=10, learners=("svm",)), ValueError, "learner must be one of"),
    (dict(n=10, learners="bayes"), TypeError, "sequence"),
    (dict(n=10, d=65), ValueError, "d must be"),
])
def test_config_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Thm1Config(**kwargs)


@pytest.mark.parametrize("fallback,eps", [("sign_xd", 0.1), ("constant", 0.05), ("coin", 0.5)])
def test_numba_simulation_equals_plain_numpy_benchmark(fallback, eps):
    """bench/'s independent plain-NumPy implementation gives identical per-trial counts."""
    from bench.bench_no_free_robustness import numpy_trial
    from theory.hypercube_simulation import _trial_counts

    cfg = Thm1Config(n=700, d=11, delta=0.1, eps=eps, trials=3, test_size=300, k=4,
                     fallback=fallback, seed=9)
    for t in range(cfg.trials):
        assert _trial_counts(cfg, t) == numpy_trial(cfg, t)


def test_verdict_fails_for_a_learner_that_breaks_the_bound():
    """The bound check can fail: a 'learner' that is secretly given phi is reported as FAIL."""
    from theory import hypercube_learners as hl
    from theory.hypercube_learners import PhiOracle

    register_learner("cheater", lambda ctx: PhiOracle(ctx.family), role="learner")
    try:
        res = run_trials(Thm1Config(n=100, trials=5, test_size=200, learners=("cheater",)))
    finally:
        hl._LEARNERS.pop("cheater", None)
    assert res["learners"][0]["robust_accuracy"] == 1.0
    assert res["learners"][0]["verdict"].startswith("FAIL")
