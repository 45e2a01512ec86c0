"""Exact robust accuracy of the l2-metric 1-NN on the full MNIST test set against the radius, in
both threat models (pixel box [0, 1] and unconstrained), beside the half-gap and single-bisector
lower bounds and the r-separation promise (results/nn_exact/mnist_{inf,l2}_{box,nobox}.json + .npz
from ``python -m simulate.nn_exact_robustness --dataset mnist``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import figure, save_png


def _load(dataset: str, norm: str, box: bool):
    from paper_checks.registry import RESULTS_DIR, load_result

    stem = f"nn_exact/{dataset}_{'l2' if norm == '2' else 'inf'}_{'box' if box else 'nobox'}"
    if not (RESULTS_DIR / (stem + ".json")).is_file():
        # a run on the first K test points only (prefix of the full run), labelled as such
        firsts = sorted((RESULTS_DIR / "nn_exact").glob(Path(stem).name + "_first*.json"))
        if not firsts:
            return None
        stem = f"nn_exact/{firsts[-1].stem}"
    meta = load_result(stem + ".json")
    z = np.load(RESULTS_DIR / (stem + ".npz"))
    return meta, {k: z[k] for k in z.files}


def _panel(ax, norm: str, runs: dict, hi: float, name: str) -> None:
    """One norm: exact robust accuracy per threat model, lower bounds, separation, r/2."""
    meta0, z0 = next(v for v in (runs[False], runs[True]) if v is not None)
    r2 = meta0["r_over_2"]
    grid = np.linspace(0, hi, 400)
    correct = z0["prediction"] == z0["label"]
    dim = meta0["dim"]

    def curve(rad, corr):
        return [(corr & (rad > e)).mean() for e in grid]

    for box, style in ((True, "-"), (False, "--")):
        if runs[box] is None:
            continue
        meta, z = runs[box]
        c = z["prediction"] == z["label"]
        part = (f" (REDUCED: {meta['n_test']} test points)" if meta.get("reduced") else "")
        ax.plot(grid, curve(z["radius"], c), style, lw=2,
                label=f"exact, {'box [0,1]' if box else 'no box'}{part}")
    hg = z0["half_gap_l2"] if norm == "2" else z0["half_gap_l2"] / np.sqrt(dim)
    lb = runs[False][1]["bisector_lower_bound"] if runs[False] is not None else z0["bisector_lower_bound"]
    ax.plot(grid, curve(lb, correct), ":", label="bisector bound (lower, any threat model)")
    ax.plot(grid, curve(hg, correct), "-.", lw=1, label="half-gap certificate (lower)")
    ts = z0["test_train_separation"]
    ax.plot(grid, [(ts > 2 * e).mean() for e in grid], color="grey", lw=1,
            label="separation covers (d_other > 2 eps)")
    if r2 <= hi:
        ax.axvline(r2, color="grey", lw=1, ls="--")
        ax.text(r2, 0.03, f" r/2 = {r2:.3f}", fontsize=7)
    else:
        ax.text(hi * 0.55, 0.45, f"r/2 = {r2:.3f} (off the axis)", fontsize=7)
    for row in meta0["paper_radii"]:
        ax.axvline(row["eps"], color="k", lw=0.5, alpha=0.4)
    ax.set_xlabel(f"l{'-inf' if norm == 'inf' else '2'} radius eps (pixels in [0, 1])")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{name} {meta0['n_test']} test x {meta0['n_train']} train: "
                 f"l{'-inf' if norm == 'inf' else '2'} perturbations", fontsize=8)
    ax.legend(fontsize=7, loc="upper right" if name != "MNIST" else "lower left")


@figure("nn_exact_mnist", "Full MNIST: 1-NN (l2 metric) exact robust accuracy vs radius in the box "
        "[0, 1] and unconstrained, half-gap and bisector lower bounds, fraction covered by "
        "test-train separation (> 2 eps), r/2 of the training set",
        paper_ref="YRZSC Sec. 3, Thm 4.2; P&L Thm 2, Sec. 8")
def make(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from paper_checks.registry import NeedsData

    panels = [(n, {b: _load("mnist", n, b) for b in (True, False)}) for n in ("inf", "2")]
    panels = [(n, d) for n, d in panels if any(v is not None for v in d.values())]
    if not panels:
        raise NeedsData("no results/nn_exact/mnist_*.json; run python -m simulate.nn_exact_robustness")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 4.2), squeeze=False)
    for ax, (norm, runs) in zip(axes[0], panels):
        _panel(ax, norm, runs, 0.45 if norm == "inf" else 3.0, "MNIST")
    return save_png(fig, out_dir, "nn_exact_mnist")


@figure("nn_exact_cifar10", "CIFAR-10 (JPEG-approximate copy): 1-NN (l2 metric) exact l-inf robust "
        "accuracy vs radius in the box [0, 1], half-gap and bisector lower bounds, fraction covered "
        "by test-train separation, r/2 of the training set",
        paper_ref="YRZSC Sec. 3, Thm 4.2; P&L Thm 2, Sec. 8")
def make_cifar10(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    from paper_checks.registry import NeedsData

    from .data_title import data_title

    runs = {True: _load("cifar10", "inf", True), False: _load("cifar10", "inf", False)}
    if runs[True] is None and runs[False] is None:
        raise NeedsData("no results/nn_exact/cifar10_inf_*.json; run python -m "
                        "simulate.nn_exact_robustness --dataset cifar10 --norm inf")
    meta = next(v for v in (runs[True], runs[False]) if v is not None)[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _panel(ax, "inf", runs, 0.06, data_title(meta, "cifar10"))
    return save_png(fig, out_dir, "nn_exact_cifar10")
