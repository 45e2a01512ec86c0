"""Figures for P&L Theorem 2 (supplementary Section 8): box coverage against n beside the bound
1 − |B|/(n e) of Eq. (20), and 1-NN certified robust accuracy at δ/2 against n."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import figure, save_png


@figure("thm2_coverage", "Box coverage vs n: Monte Carlo (robust grid distribution), exact "
        "(uniform), Eq. (16) and the bound 1-|B|/(ne) of Eq. (20); 37|B| marked",
        paper_ref="Thm 2, Suppl. Eqs. (14)-(20)")
def make_coverage(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from theory.box_covering import (coverage_bound, coverage_monte_carlo, eq16_bound, n_boxes,
                                     theorem2_sample_size, uniform_box_masses, uniform_coverage_exact)
    from theory.robust_distributions import non_vacuous_grid

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (d, delta) in zip(axes, ((2, 0.1), (3, 0.2))):
        B = n_boxes(d, delta)
        ns = np.unique(np.geomspace(1, 2 * theorem2_sample_size(d, delta), 60).astype(int))
        masses = uniform_box_masses(d, delta)
        ax.plot(ns, [uniform_coverage_exact(d, delta, int(n)) for n in ns], label="exact coverage, uniform")
        ax.plot(ns, [eq16_bound(masses, int(n)) for n in ns], ":", label="Eq. (16), uniform")
        ax.plot(ns, [coverage_bound(d, delta, int(n)) for n in ns], "--", label="bound 1-|B|/(ne), Eq. (20)")
        dist = non_vacuous_grid(d=d, delta=delta, cells_per_axis=2, n_classes=2, seed=0)
        mc_n = np.unique(np.geomspace(2, theorem2_sample_size(d, delta), 9).astype(int))
        est = [coverage_monte_carlo(dist.sample, d, delta, int(n), trials=MC_TRIALS, n_test=300,
                                    seed=1) for n in mc_n]
        lo, hi = np.array([clipped_t_interval(e) for e in est]).T
        mean = np.array([e.mean for e in est])
        ax.errorbar(mc_n, mean, yerr=[mean - lo, hi - mean], fmt="o", ms=4, color="C3",
                    label=f"Monte Carlo, robust grid distribution ({MC_TRIALS} trials, 95% "
                          f"t-interval over trials within [0, 1])")
        ax.axvline(theorem2_sample_size(d, delta), color="k", lw=0.8)
        ax.axhline(0.99, color="grey", lw=0.6)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.04)
        ax.set_xlabel("training points n")
        ax.set_ylabel("P(test box holds a training point)")
        ax.set_title(f"d={d}, delta={delta}, |B|={B}; vertical line: 37|B|")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
    fig.subplots_adjust(bottom=0.24, top=0.9, wspace=0.25)
    return save_png(fig, out_dir, "thm2_coverage")


MC_TRIALS = 10


def clipped_t_interval(est, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval (scipy.stats.t) for the expected coverage over training sets, from the
    per-trial means, intersected with [0, 1] (the coverage is a probability, so the intersection
    keeps the confidence level). A binomial interval over the pooled test points would ignore
    that the points of one trial share a training set."""
    from scipy import stats

    if est.trials < 2 or not np.isfinite(est.stderr):
        return max(0.0, est.mean), min(1.0, est.mean)
    hw = float(stats.t.ppf(0.5 + level / 2, est.trials - 1)) * est.stderr
    return max(0.0, est.mean - hw), min(1.0, est.mean + hw)


@figure("thm2_cra", "1-NN certified robust accuracy (l-inf, radius delta/2) vs n / (37 ceil(1/delta)^d) "
        "from results/nn_covering.json, or a small fresh run when absent", paper_ref="Thm 2")
def make_cra(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from paper_checks.registry import NeedsData, load_result
    from theory.box_covering import theorem2_sample_size

    try:
        rows = load_result("nn_covering.json")["rows"]
        source = "results/nn_covering.json"
    except NeedsData:
        rows = _small_run()
        source = "small fresh run (3 trials x 300 test points)"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for d, delta in sorted({(r["d"], r["delta"]) for r in rows}):
        rs = sorted((r for r in rows if r["d"] == d and r["delta"] == delta), key=lambda r: r["n"])
        x = [r["n"] / theorem2_sample_size(d, delta) for r in rs]
        ax.plot(x, [r["certified_robust_accuracy"] for r in rs], "o-", ms=3, label=f"d={d}, delta={delta}")
    ax.axhline(0.99, color="grey", lw=0.6)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("n / (37 ceil(1/delta)^d)")
    ax.set_ylabel("1-NN certified robust accuracy at delta/2\n(certified: a lower bound)")
    ax.set_title(f"Theorem 2 Monte Carlo ({source})", fontsize=9)
    ax.legend(fontsize=7)
    return save_png(fig, out_dir, "thm2_cra")


def _small_run():
    from theory.box_covering import simulate_theorem2, theorem2_sample_size
    from theory.robust_distributions import non_vacuous_grid

    rows = []
    for d in (1, 2, 3):
        delta = 0.2
        dist = non_vacuous_grid(d=d, delta=delta, cells_per_axis=2, n_classes=2, seed=0)
        top = theorem2_sample_size(d, delta)
        for j in range(8, -1, -1):
            n = max(1, -(-top // 2 ** j))
            res = simulate_theorem2(dist.sample, d, delta, n, trials=3, n_test=300, seed=j)
            rows.append({"d": d, "delta": delta, "n": n, "n_over_thm2": n / top,
                         "certified_robust_accuracy": res.certified_robust_accuracy.mean})
    return rows
