"""Staircase figure like Raghunathan et al. (2019): fitted functions at the smallest training-set
size, and test MSE / robust test MSE against n: medians over the trials with order-statistic
intervals (results/staircase.json from
``python -m simulate.staircase``; YRZSC Appendix A)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import figure, save_png

LABELS = {"natural": "natural", "at": "AT", "gr": "GR", "llr": "LLR", "trades": "TRADES"}


@figure("staircase", "Staircase: fitted functions for small n (one trial) and test / robust test "
        "MSE vs n, medians with order-statistic intervals, for natural, AT, GR, LLR, TRADES",
        paper_ref="YRZSC App. A; Raghunathan et al. 2019")
def make(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from paper_checks.registry import load_result

    data = load_result("staircase.json")
    methods = data["methods"]
    grid = np.array(data["fits"]["grid"])
    n_small = min(data["fits"]["by_n"], key=int)
    fit = data["fits"]["by_n"][n_small]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot(grid, data["spec"]["slope"] * np.round(grid), color="k", lw=1, alpha=0.5, label="staircase")
    styles = {"natural": "-", "at": "-", "gr": "--", "llr": ":", "trades": "-."}
    for m in methods:
        ax.plot(grid, fit[m], styles[m], lw=1.5, label=LABELS[m])
    ax.scatter(fit["x"], fit["y"], s=14, color="purple", zorder=5, label=f"training (n={n_small})")
    ax.set_xlabel("t")
    ax.set_ylabel("f(t)")
    ax.set_title(f"fitted functions, n = {n_small} (trial 0)", fontsize=9)
    ax.legend(fontsize=7)
    for ax, key, title in ((axes[1], "test_mse", "test MSE"), (axes[2], "robust_test_mse",
                                                               f"robust test MSE (eps = {data['spec']['eps']:.3f})")):
        for m in methods:
            rs = sorted((r for r in data["rows"] if r["method"] == m), key=lambda r: r["n"])
            n = np.array([r["n"] for r in rs])
            v = np.array([r[key + "_median"] for r in rs])
            lo_hi = np.array([r[key + "_interval"] for r in rs])
            ax.plot(n, v, "o" + styles[m], ms=3, label=LABELS[m])
            ax.fill_between(n, lo_hi[:, 0], lo_hi[:, 1], alpha=0.15)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(n, [str(v) for v in n])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xlabel("training-set size n")
        cov = 100 * data["rows"][0]["interval_coverage"]
        ax.set_title(f"{title}, median and {cov:.0f}% interval over {data['rows'][0]['trials']} trials",
                     fontsize=9)
        ax.legend(fontsize=7)
    return save_png(fig, out_dir, "staircase")
