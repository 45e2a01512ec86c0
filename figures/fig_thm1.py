"""Figure for P&L Theorem 1 (No Free Robustness): exact robust accuracy against n, with the bound.

Left: fixed d = 12 (2^11 robust patterns), n from 2^5 to 2^15 -- robust learning only starts once n
is comparable to 2^(d-1).  Right: the theorem's d = ceil(log2 n) + 7 for each n.  The theorem
bounds the *expectation* over (phi, S, test point): E[robust acc] <= 1/2 + P(seen)/2 (attained by
the Bayes-robust learner) <= 1/2 + n/2^d <= 1/2 + 1/128 < 0.51.  A finite Monte Carlo mean
scatters around its expectation, so a learner at the attained bound lands above it about half of
the time; what the bound predicts is that the 95% intervals cover a value <= 1/2 + P(seen)/2, and
the verdict of theory.hypercube_simulation (one-sided t-test, level 0.001) says FAIL for none.
Computed with small seeded settings (left 8 trials x 400 points; right 40 trials x 2000 points).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.registry import figure, save_png

LEARNERS = ("memoriser", "1nn", "knn", "bayes")
RIGHT_TRIALS = 40
COLORS = {"memoriser": "C0", "1nn": "C1", "knn": "C2", "bayes": "C3"}


def _series(points, name):
    rows = [next(r for r in p["learners"] if r["name"] == name) for p in points]
    mean = np.array([r["robust_accuracy"] for r in rows])
    ci = np.array([r["robust_accuracy_ci95"] for r in rows])
    return mean, np.abs(ci.T - mean)


@figure("thm1_robust_accuracy_vs_n",
        "P&L Thm 1: exact robust accuracy at eps = delta against n, with 1/2 + n/2^d",
        paper_ref="Thm 1 / Sec. 7")
def make(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from theory.hypercube_simulation import SweepConfig, Thm1Config, run_sweep, run_trials

    base = Thm1Config(n=1, d=12, trials=8, test_size=400, learners=LEARNERS, seed=0)
    sweep = run_sweep(SweepConfig(base=base))
    pts = sweep["points"]
    ns = np.array([p["n"] for p in pts], dtype=float)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    grid = np.logspace(np.log2(ns[0]), np.log2(ns[-1]), 200, base=2)
    q = 2.0 ** -(sweep["d"] - 1)
    ax.plot(grid, np.minimum(1, 0.5 + grid / 2 ** sweep["d"]), "k--", label="bound 1/2 + n/2^d")
    ax.plot(grid, 0.5 + 0.5 * (1 - (1 - q) ** grid), "k:", label="1/2 + P(seen)/2")
    for name in LEARNERS:
        m, err = _series(pts, name)
        ax.errorbar(ns, m, yerr=err, marker="o", ms=3, capsize=2, label=name,
                    color=COLORS[name])
    ax.axvline(2 ** (sweep["d"] - 1), color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training-set size n")
    ax.set_ylabel("exact robust accuracy (eps = delta)")
    ax.set_title(f"fixed d = {sweep['d']} (grey: n = 2^(d-1))")
    ax.legend(fontsize=7)

    ax = axes[1]
    from theory.constants import THM1_ROBUST_ACC_BOUND

    right = ("1nn", "knn", "bayes")       # the memoriser sits near 0 (shown on the left)
    ns2 = [2 ** k for k in range(4, 14, 1)]
    res = [run_trials(Thm1Config(n=n, trials=RIGHT_TRIALS, test_size=2000, learners=right,
                                 seed=1)) for n in ns2]
    ax.plot(ns2, [r["bound"] for r in res], "k--", lw=0.8, label="1/2 + n/2^d")
    ax.plot(ns2, [r["bound_tight"] for r in res], "k-", lw=1.2,
            label="1/2 + P(seen)/2 (attained bound on the expectation)")
    ax.axhline(THM1_ROBUST_ACC_BOUND, color="r", lw=0.8,
               label=f"{THM1_ROBUST_ACC_BOUND} (Thm 1)")
    fails = []
    for j, name in enumerate(right):
        m, err = _series(res, name)
        x = np.array(ns2, dtype=float) * 2 ** ((j - 1) * 0.08)   # small offsets: no overlap
        ax.errorbar(x, m, yerr=err, marker="o", ms=3, capsize=2, lw=0.8, label=name,
                    color=COLORS[name])
        fails += [(n, name) for n, r in zip(ns2, res) for row in r["learners"]
                  if row["name"] == name and row["verdict"].startswith("FAIL")]
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training-set size n")
    ax.set_ylabel("exact robust accuracy (eps = delta)")
    ax.set_ylim(0.48, 0.53)
    verdict = ("t-test verdict: no FAIL" if not fails
               else "t-test FAIL at " + ", ".join(f"{nm}@{n}" for n, nm in fails))
    ax.set_title(f"theorem's d = ceil(log2 n) + 7; {RIGHT_TRIALS} trials x 2000 points\n"
                 f"{verdict} (means scatter around their expectation)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("No Free Robustness (P&L Thm 1): mean exact robust accuracy, 95% t-intervals "
                 "over trials; the bound is on the expectation", y=1.0)
    fig.tight_layout()
    return save_png(fig, out_dir, "thm1_robust_accuracy_vs_n")
