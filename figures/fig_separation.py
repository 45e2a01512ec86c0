"""Separation histograms (YRZSC Figures 2 and 5) and original vs random-label minimum separation
(Figure 8), from the committed results of ``python -m simulate.separation``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.registry import figure, save_png
from paper_checks.registry import load_result


@figure("separation_mnist_hist", "MNIST l-inf train-train and test-train separation histograms",
        paper_ref="Fig. 2, Fig. 5")
def make(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    res = load_result("separation/mnist_inf.json")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    panels = ((axes[0], "test_train_hist", "test_train_min", "test images", "test-train (Fig. 2)"),
              (axes[1], "train_train_hist", "train_train_min", "training images", "train-train (Fig. 5)"))
    for ax, key, min_key, who, title in panels:
        counts, edges = (np.asarray(a) for a in res[key])
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:blue")
        ax.set_yscale("log")   # the few small distances (the minimum) vanish on a linear axis
        ax.axvline(res[min_key], color="tab:red", ls="--", lw=1)
        ax.annotate(f"min {res[min_key]:.3f}", (res[min_key], 0.92), xycoords=("data", "axes fraction"),
                    xytext=(4, 0), textcoords="offset points", color="tab:red", fontsize=9)
        ax.set_title(f"MNIST {title}")
        ax.set_xlabel("l-inf distance to the nearest\nother-label training image (pixels in [0, 1])")
        ax.set_ylabel(f"number of {who} (log scale)")
    return save_png(fig, out_dir, "separation_mnist_hist")


@figure("separation_mnist_random", "MNIST minimum separation, original vs random labels",
        paper_ref="Fig. 8")
def make_random(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    orig = load_result("separation/mnist_inf.json")
    rand = load_result("separation/mnist_inf_random0.json")
    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    keys = ("train_train_min", "test_train_min")
    xs = np.arange(2)
    for off, res, label, colour in ((-0.2, orig, "original labels", "tab:blue"),
                                    (0.2, rand, f"random labels (seed {rand.get('random_labels_seed', 0)})",
                                     "tab:orange")):
        vals = [res[k] for k in keys]
        bars = ax.bar(xs + off, vals, 0.4, label=label, color=colour)
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=9)
    ax.set_xticks(xs, ["train-train", "test-train"])
    ax.set_ylabel("minimum l-inf separation (pixels in [0, 1])")
    ax.set_ylim(0, 1.0)
    ax.set_title("MNIST: minimum l-inf distance between differently\nlabelled images, original vs random labels")
    ax.legend(loc="upper center", ncol=2, fontsize=9, frameon=False)
    return save_png(fig, out_dir, "separation_mnist_random")
