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
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, title in ((axes[0], "test_train_hist", "test-train (Fig. 2)"),
                           (axes[1], "train_train_hist", "train-train (Fig. 5)")):
        counts, edges = (np.asarray(a) for a in res[key])
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge")
        ax.set_title(f"MNIST {title}")
        ax.set_xlabel("l-inf distance to nearest other-label train image")
    axes[0].set_ylabel("count")
    return save_png(fig, out_dir, "separation_mnist_hist")


@figure("separation_mnist_random", "MNIST minimum separation, original vs random labels",
        paper_ref="Fig. 8")
def make_random(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    orig = load_result("separation/mnist_inf.json")
    rand = load_result("separation/mnist_inf_random0.json")
    fig, ax = plt.subplots(figsize=(4.5, 3))
    keys = ("train_train_min", "test_train_min")
    xs = np.arange(2)
    ax.bar(xs - 0.2, [orig[k] for k in keys], 0.4, label="original labels")
    ax.bar(xs + 0.2, [rand[k] for k in keys], 0.4, label="random labels")
    ax.set_xticks(xs, ["train-train", "test-train"])
    ax.set_ylabel("minimum l-inf separation")
    ax.legend()
    return save_png(fig, out_dir, "separation_mnist_random")
