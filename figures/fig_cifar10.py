"""CIFAR-10 figures from the committed runs on the JPEG copy (titles say "CIFAR-10,
JPEG-approximate"): the l-inf separation histograms (YRZSC Figures 2 and 5), original vs random
labels (Figure 8), and the nearest-neighbour distance against log n (P&L Fig. 13)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.data_title import data_title
from figures.registry import figure, save_png
from paper_checks.registry import load_result


@figure("separation_cifar10_hist", "CIFAR-10 l-inf train-train and test-train separation histograms",
        paper_ref="YRZSC Fig. 2, Fig. 5")
def make_hist(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    res = load_result("separation/cifar10_jpeg_inf.json")
    name = data_title(res, "cifar10")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title, mn in ((axes[0], "test_train_hist", "test-train (Fig. 2)", res["test_train_min"]),
                               (axes[1], "train_train_hist", "train-train (Fig. 5)", res["train_train_min"])):
        counts, edges = (np.asarray(a) for a in res[key])
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge")
        ax.axvline(2 * 0.031, color="k", ls="--", lw=1, label="2 eps (eps = 0.031)")
        ax.axvline(mn, color="C3", lw=1, label=f"minimum {mn:.3f}")
        ax.set_title(f"{name}: {title}", fontsize=9)
        ax.set_xlabel("l-inf distance to nearest\nother-label train image")
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, out_dir, "separation_cifar10_hist")


@figure("separation_cifar10_random", "CIFAR-10 minimum and mean separation, original vs random labels",
        paper_ref="YRZSC Fig. 8, Table 8")
def make_random(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    orig = load_result("separation/cifar10_jpeg_inf.json")
    rand = load_result("separation/cifar10_jpeg_inf_random0.json")
    keys = ("train_train_min", "test_train_min", "train_train_mean", "test_train_mean")
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(x - 0.2, [orig[k] for k in keys], 0.4, label="original labels")
    ax.bar(x + 0.2, [rand[k] for k in keys], 0.4, label="random labels (seed 0)")
    ax.set_xticks(x, [k.replace("_", " ").replace("train train", "train-train")
                      .replace("test train", "test-train") for k in keys], fontsize=8)
    ax.set_ylabel("l-inf separation")
    ax.set_ylim(0, 1.25 * max(max(orig[k] for k in keys), max(rand[k] for k in keys)))
    ax.set_title(f"{data_title(orig, 'cifar10')}: separation, original vs random labels", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_png(fig, out_dir, "separation_cifar10_random")


@figure("nn_scaling_cifar10", "CIFAR-10: median (and quartiles of the) nearest-neighbour distance of "
        "test queries vs training-set size n (log axis), with linear-log fits and d* estimates",
        paper_ref="P&L Fig. 13, Sec. 12")
def make_nn(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    data = load_result("nn_distance_scaling_cifar10.json")
    name = data_title(data, "cifar10")
    norms = [s["norm"] for s in data["summary"]]
    fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4.2), squeeze=False)
    for ax, s in zip(axes[0], data["summary"]):
        rs = [r for r in data["rows"] if r["norm"] == s["norm"]]
        n = np.array([r["n"] for r in rs], dtype=float)
        med = np.array([r["median"] for r in rs])
        ax.fill_between(n, [r["q25"] for r in rs], [r["q75"] for r in rs], alpha=0.25, label="quartiles")
        ax.plot(n, med, "o-", ms=4, label="median r*(n)")
        b, a = np.polyfit(np.log(n), med, 1)
        ax.plot(n, a + b * np.log(n), "--", label=f"linear in ln n (R² {s['linlog_r2']:.3f})")
        ax.set_xscale("log", base=2)
        unit = "l2, pixels in [0,1]" if s["norm"] == "2" else ("angle (rad)" if s["norm"] == "angular" else "l-inf")
        ax.set_xlabel("training-set size n")
        ax.set_ylabel(f"distance to nearest training image ({unit})")
        lb = s.get("d_star_levina_bickel")
        ax.set_title(f"{name}, norm {s['norm']}:\nd* slope {s['d_star_slope']:.1f}"
                     + (f", Levina-Bickel {lb:.1f}" if lb else "")
                     + f" (paper: about {s['reference_cifar10_d_star']})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, out_dir, "nn_scaling_cifar10")
