"""P&L Theorem 1 (No Free Robustness), Section 3 and supplementary Section 7: the three bullets,
each measured with the exact worst-case evaluator, and the inequality chain checked with sympy.

Settings: the main job's (n = 1e4, d = ceil(log2 n) + 7 = 21, delta = 0.1, eps = delta, seed 0).
"""
from __future__ import annotations

import numpy as np

from paper_checks.registry import Claim, Measured, register

_MAIN = dict(n=10_000, delta=0.1, seed=0)


def _attack_accuracy(learner, X, y, eps: float, rng, n_random: int = 32) -> float:
    """Accuracy under :func:`theory.hypercube_robustness.feature_space_attack` (an upper bound
    on the exact robust accuracy, computed independently of the exact evaluator)."""
    from theory.hypercube_robustness import feature_space_attack

    return float(feature_space_attack(learner, X, y, eps, rng, n_random).mean())


def _bullet1():
    """Identity (holds by construction: |x_i| = 1 > eps for the robust features), but measured by
    an attack in feature space rather than copied from the clean accuracy."""
    from theory.hypercube import HypercubeFamily, derive_key, dimension_for
    from theory.hypercube_learners import PhiOracle

    rng = np.random.default_rng(1)
    accs = []
    d = dimension_for(_MAIN["n"])
    for t in range(3):
        fam = HypercubeFamily(d=d, delta=_MAIN["delta"], phi_key=derive_key(0, 1, t))
        test = fam.sample(2000, derive_key(0, 3, t))
        X, y = test.features(), test.y
        oracle = PhiOracle(fam)
        for eps in (0.1, 0.5, 0.999):       # eps < 1
            accs.append(_attack_accuracy(oracle, X, y, eps, rng))
    return Measured(min(accs), "min over 3 draws of phi and eps in {0.1, 0.5, 0.999} of the "
                               "accuracy of phi(sign(x_1..x_{d-1})) under a feature-space attack "
                               "(each coordinate moved eps toward 0, 32 random directions; 2000 "
                               "points); holds by construction since |x_i| = 1 > eps")


def _bullet2():
    """Identity: x_d = delta * y, so sign(x_d) = y on every point."""
    from theory.hypercube_simulation import Thm1Config, run_trials

    res = run_trials(Thm1Config(**_MAIN, trials=5, test_size=20_000, learners=("linear",)))
    row = res["learners"][0]
    return Measured(row["clean_accuracy"], f"sign(x_d) test accuracy; its exact robust accuracy "
                                           f"at eps = delta is {row['robust_accuracy']:.4f}")


def _bullet3():
    from theory.hypercube_simulation import Thm1Config, run_trials

    rows = []
    # Cheap learners get many test points; the k-NN learners use the main job's setting.
    for learners, m in ((("linear", "memoriser", "bayes"), 20_000), (("1nn", "knn"), 2_000)):
        res = run_trials(Thm1Config(**_MAIN, trials=20, test_size=m, learners=learners))
        rows += res["learners"]
    best = max(rows, key=lambda r: r["robust_accuracy"])
    detail = "; ".join(f"{r['name']} {r['robust_accuracy']:.4f} "
                       f"[{r['robust_accuracy_ci95'][0]:.4f}, {r['robust_accuracy_ci95'][1]:.4f}]"
                       for r in rows)
    fails = [r["name"] for r in rows if r["verdict"].startswith("FAIL")]
    detail += (f"; t-test against 1/2+P(seen)/2 = {res['bound_tight']:.5f} (level 0.001): "
               + (f"FAIL for {', '.join(fails)}" if fails else "no FAIL"))
    return Measured(best["robust_accuracy"],
                    f"max over learners of mean exact robust acc at eps=delta (bound 1/2+n/2^d = "
                    f"{res['bound']:.5f}): {detail}")


def _chain():
    from theory.symbolic_thm1 import verify_chain

    res = verify_chain()
    return Measured(res["holds"], "sympy: 1-(1-2^-(d-1))^n <= n/2^(d-1); 1/2+P/2 <= 1/2+n/2^d; "
                                  "n/2^d <= 1/128; 1/2+1/128 < 51/100")


register(Claim(id="thm1.bullet1_robust_classifier", paper="P&L", location="Thm 1",
               claim="phi(sign(x_1..x_{d-1})) has 100% robust accuracy at every l2 radius < 1",
               claimed=1.0, measure=_bullet1, compare="approx", tolerance=0.0, cost="fast", kind="identity"))
register(Claim(id="thm1.bullet2_linear_accuracy", paper="P&L", location="Thm 1",
               claim="the linear classifier sign(x_d) has 100% test accuracy",
               claimed=1.0, measure=_bullet2, compare="approx", tolerance=0.0, cost="fast", kind="identity"))
register(Claim(id="thm1.bullet3_robust_below_51", paper="P&L", location="Thm 1",
               claim="learners from n samples have expected robust accuracy < 51% at eps = delta",
               claimed=0.51, measure=_bullet3, compare="lt", tolerance=0.0, cost="fast", kind="reproduction"))
register(Claim(id="thm1.bound_chain_sympy", paper="P&L", location="Sec. 7",
               claim="robust acc <= 1/2 + 1/2 P(seen) <= 1/2 + n/2^d <= 1/2 + 1/128 < 0.51",
               claimed=True, measure=_chain, compare="true", tolerance=0.0, cost="fast", kind="identity"))
