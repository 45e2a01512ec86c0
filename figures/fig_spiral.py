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
    fig, ax = plt.subplots(figsize=(5, 4.5))
    v = np.quantile(np.abs(f), 0.95)
    im = ax.pcolormesh(gx, gy, f, cmap="RdBu", vmin=-v, vmax=v, shading="auto")
    ax.scatter(*x[lab == 1].T, s=4, c="navy", label="positive")
    ax.scatter(*x[lab == 0].T, s=4, c="darkred", label="negative")
    ax.set_title(f"f(x) = (d(x,X-) - d(x,X+)) / 2r, r = {r:.3f} (l2)")
    fig.colorbar(im, ax=ax)
    ax.legend(loc="lower right", fontsize=7)
    return save_png(fig, out_dir, "spiral_distance_function")
