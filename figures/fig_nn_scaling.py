"""Figures for P&L Sections 9.4 and 12: nearest-neighbour distance against log n (the MNIST
analogue of Fig. 13, from results/nn_distance_scaling_mnist.json) and synthetic data of known
intrinsic dimension with the Eq. (26) band."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import figure, save_png


@figure("nn_scaling_mnist", "MNIST: median (and quartiles of the) nearest-neighbour distance of test "
        "queries vs training-set size n (log axis), l2 and angular, with linear-log fits",
        paper_ref="Fig. 13 (CIFAR-10 in the paper; MNIST here)")
def make_mnist(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from paper_checks.registry import load_result

    data = load_result("nn_distance_scaling_mnist.json")
    norms = [s["norm"] for s in data["summary"]]
    fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4), squeeze=False)
    for ax, s in zip(axes[0], data["summary"]):
        rs = [r for r in data["rows"] if r["norm"] == s["norm"]]
        n = np.array([r["n"] for r in rs], dtype=float)
        ax.fill_between(n, [r["q25"] for r in rs], [r["q75"] for r in rs], alpha=0.25, label="quartiles")
        ax.plot(n, [r["median"] for r in rs], "o-", ms=4, label="median r*(n)")
        med = np.array([r["median"] for r in rs])
        b, a = np.polyfit(np.log(n), med, 1)
        ax.plot(n, a + b * np.log(n), "--", label=f"linear in ln n (R² {s['linlog_r2']:.3f})")
        ax.set_xscale("log", base=2)
        unit = "l2, pixels in [0,1]" if s["norm"] == "2" else "angle (rad)"
        ax.set_xlabel("training-set size n")
        ax.set_ylabel(f"distance to nearest training image ({unit})")
        lb = s.get("d_star_levina_bickel")
        ax.set_title(f"MNIST, norm {s['norm']}: d* slope {s['d_star_slope']:.1f}"
                     + (f", Levina-Bickel {lb:.1f}" if lb else "")
                     + f" (CIFAR-10 ref. {s['reference_cifar10_d_star']})", fontsize=8)
        ax.legend(fontsize=7)
    return save_png(fig, out_dir, "nn_scaling_mnist")


@figure("nn_scaling_synthetic", "Synthetic data of intrinsic dimension d* in R^32: median NN distance "
        "vs n (log-log) with the slope estimate of d*", paper_ref="Suppl. Sec. 12, Eqs. (26)-(28)")
def make_synthetic(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from theory.nn_scaling import (embedded_uniform, nn_distance_curve, random_orthonormal,
                                   slope_intrinsic_dimension)

    rng = np.random.default_rng(0)
    sizes = [2 ** k for k in range(5, 13)]
    fig, ax = plt.subplots(figsize=(6, 4))
    for d_star in (2, 4, 8, 16):
        b = random_orthonormal(d_star, 32, rng)
        train = embedded_uniform(sizes[-1], d_star, 32, rng, b)
        q = embedded_uniform(300, d_star, 32, rng, b)
        cur = nn_distance_curve(train, q, sizes, "2")
        est, _ = slope_intrinsic_dimension(sizes, cur.median)
        ax.plot(sizes, cur.median, "o-", ms=3, label=f"d*={d_star}: slope estimate {est:.1f}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("training-set size n")
    ax.set_ylabel("median NN distance r*(n)")
    ax.set_title("r* ~ n^(-1/d*): uniform on a d*-cube in R^32", fontsize=9)
    ax.legend(fontsize=7)
    return save_png(fig, out_dir, "nn_scaling_synthetic")
