"""Exact robust accuracy of l2-metric 1-NN on an MNIST subset against the radius, beside the two
lower bounds and the r-separation promise (results/nn_exact_mnist.json from
``python -m simulate.nn_exact_robustness``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import figure, save_png


@figure("nn_exact_mnist", "MNIST subset: 1-NN (l2 metric) robust accuracy vs radius, exact vs "
        "half-gap and bisector lower bounds, and the fraction covered by test-train separation "
        "(> 2 eps), with r/2 of the training subset", paper_ref="YRZSC Sec. 3, Thm 4.2; P&L Sec. 8")
def make(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from paper_checks.registry import load_result

    data = load_result("nn_exact_mnist.json")
    norms = list(data["norms"])
    fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        blk = data["norms"][norm]
        correct = np.array(blk["correct"], dtype=bool)
        r_over_2 = blk["r_train_train"] / 2
        hi = max(r_over_2 * 1.15, max(e["eps"] for e in blk["rows"]) * 1.3)
        grid = np.linspace(0, hi, 300)

        def curve(rad):
            rad = np.array([np.inf if v in (None, "inf") else v for v in rad], dtype=float)
            return [(correct & (rad > e)).mean() for e in grid]

        ts = np.array(blk["test_train_separation"], dtype=float)
        ax.plot(grid, curve(blk["radius"]), lw=2, label="exact (QP/LP)")
        ax.plot(grid, curve(blk["lower_bound"]), "--", label="bisector bound (lower)")
        ax.plot(grid, curve(blk["half_gap"]), ":", label="half-gap certificate (lower)")
        ax.plot(grid, [(ts > 2 * e).mean() for e in grid], "-.", label="separation covers (d_other > 2 eps)")
        ax.axvline(r_over_2, color="grey", lw=1)
        ax.text(r_over_2, 0.02, f" r/2 = {r_over_2:.3f}", fontsize=7)
        for row in blk["rows"]:
            ax.plot([row["eps"]], [row["exact_robust_accuracy"]], "ko", ms=4)
            ax.annotate(f"{row['exact_robust_accuracy']:.3f}", (row["eps"], row["exact_robust_accuracy"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"l{'-inf' if norm == 'inf' else '2'} radius eps (pixels in [0, 1])")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{data['dataset']} subset n_train={data['n_train']}, n_test={data['n_test']}: "
                     f"l{norm} perturbations", fontsize=8)
        ax.legend(fontsize=7)
    return save_png(fig, out_dir, "nn_exact_mnist")
