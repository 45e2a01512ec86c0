"""f(x) of YRZSC Theorem 4.4 over the plane for the Appendix A.0.1 spiral (Figure 3 analogue)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.registry import figure, save_png


@figure("spiral_distance_function", "binary distance function f on the spiral dataset",
        paper_ref="Fig. 3")
def make(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from theory.distance_classifier import binary_function
    from theory.separation import separation_row
    from theory.spiral import SpiralConfig, make_spiral

    x, y = make_spiral(SpiralConfig(n_per_class=200, seed=0))
    lab = (y > 0).astype(np.int64)
    r = separation_row(x, lab, norm="2", scale=1.0).train_train_min / 2
    lim = np.abs(x).max() + 1.5
    g = np.linspace(-lim, lim, 160)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    f = binary_function(grid, x[lab == 1], x[lab == 0], r, "2").reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(6, 5.2), constrained_layout=True)
    v = np.quantile(np.abs(f), 0.95)
    im = ax.pcolormesh(gx, gy, f, cmap="RdBu", vmin=-v, vmax=v, shading="auto")
    # markers that stay visible on every shade of the red-blue background: white circles and
    # black triangles, each with an edge of the opposite colour
    ax.scatter(*x[lab == 1].T, s=14, marker="o", facecolor="white", edgecolor="black", linewidth=0.6,
               label="positive class (X+)")
    ax.scatter(*x[lab == 0].T, s=16, marker="^", facecolor="black", edgecolor="white", linewidth=0.5,
               label="negative class (X-)")
    ax.set_title(f"YRZSC Thm 4.4 distance function on the spiral, r = {r:.3f} (l2)")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_aspect("equal")
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    cb.set_label("f(x) = (d(x, X-) - d(x, X+)) / (2r)   (> 0: predicted positive)")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    return save_png(fig, out_dir, "spiral_distance_function")
