"""Figures of the P&L network experiments from committed results (``results/*.json``):
accuracy and certified robust accuracy against the training-set size (Fig. 1 / Fig. 7) and the
robust-overfitting CRA curves on train and test (Fig. 2). Skipped (NeedsData) when the result
file is absent."""
from __future__ import annotations

from pathlib import Path

from figures.data_title import data_title
from figures.registry import figure, save_png
from paper_checks.registry import load_result

MODEL_LABELS = {"simple_convnet": "SimpleConvNet (standard)", "aol_mlp": "AOL-MLP", "cpl_convnet": "CPL ConvNet",
                "aol_convnet": "AOL ConvNet", "unified_convnet": "Sec. 4.5 ConvNet"}


def _scaling_plot(summary: dict, title: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(6, 7), sharex=True)
    models = sorted({r["model"] for r in summary["runs"]})
    for m in models:
        rows = sorted((r for r in summary["runs"] if r["model"] == m), key=lambda r: r["train_size"])
        n = [r["train_size"] for r in rows]
        line, = axes[0].plot(n, [r["test_acc"] for r in rows], "o-", label=MODEL_LABELS.get(m, m) + " test")
        axes[0].plot(n, [r["train_acc"] for r in rows], "--", color=line.get_color(), alpha=0.6,
                     label=MODEL_LABELS.get(m, m) + " train")
        cra = [(r["train_size"], r["test_cra_36"]) for r in rows if r.get("test_cra_36") is not None]
        if cra:
            axes[1].plot(*zip(*cra), "o-", label=MODEL_LABELS.get(m, m))
    axes[0].set_ylabel("accuracy (train dashed)")
    axes[1].set_ylabel("test CRA, eps = 36/255")
    axes[1].set_xlabel("training-set size (log scale)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title(title, fontsize=9)
    return fig


@figure("pl_scaling_law_mnist", "Accuracy and CRA vs MNIST training-set size (full GPU run)",
        paper_ref="Fig. 7")
def make_scaling_mnist(out_dir: Path) -> Path:
    s = load_result("scaling_law_mnist.json")
    return save_png(_scaling_plot(s, "MNIST robust scaling law (fixed compute)"), out_dir, "pl_scaling_law_mnist")


@figure("pl_scaling_law_mnist_cpu_small", "Accuracy and CRA vs MNIST training-set size, reduced CPU run",
        paper_ref="Fig. 7 (reduced)")
def make_scaling_mnist_cpu(out_dir: Path) -> Path:
    s = load_result("scaling_law_mnist_cpu_small.json")
    title = "MNIST, REDUCED CPU configuration (not the paper's scale)"
    return save_png(_scaling_plot(s, title), out_dir, "pl_scaling_law_mnist_cpu_small")


@figure("pl_scaling_law_cifar10", "Accuracy and CRA vs CIFAR-10 training-set size", paper_ref="Fig. 1")
def make_scaling_cifar(out_dir: Path) -> Path:
    s = load_result("scaling_law_cifar10.json")
    return save_png(_scaling_plot(s, f"{data_title(s, 'cifar10')} robust scaling law (fixed compute)"),
                    out_dir, "pl_scaling_law_cifar10")


@figure("pl_scaling_law_cifar10_cpu_reduced", "Accuracy and CRA vs CIFAR-10 training-set size, "
        "reduced CPU run", paper_ref="Fig. 1 (reduced)")
def make_scaling_cifar_cpu(out_dir: Path) -> Path:
    s = load_result("scaling_law_cifar10_cpu_reduced.json")
    title = f"{data_title(s, 'cifar10')}, REDUCED CPU configuration (not the paper's scale)"
    return save_png(_scaling_plot(s, title), out_dir, "pl_scaling_law_cifar10_cpu_reduced")


def _pca_plot(summary: dict, title: str):
    """Table 1 as grouped bars: per PC subset, train/test accuracy of each model and test CRA."""
    import matplotlib.pyplot as plt
    import numpy as np

    subsets = list(dict.fromkeys(r["subset"] for r in summary["runs"]))
    models = sorted({r["model"] for r in summary["runs"]})
    cols = [(m, k) for m in models for k in ("train_acc", "test_acc", "test_cra_36")
            if any(r["model"] == m and r.get(k) is not None for r in summary["runs"])]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(cols), 1)
    x = np.arange(len(subsets))
    for j, (m, k) in enumerate(cols):
        vals = []
        for sub in subsets:
            r = next((r for r in summary["runs"] if r["subset"] == sub and r["model"] == m), None)
            vals.append(np.nan if r is None or r.get(k) is None else r[k])
        ax.bar(x + (j - (len(cols) - 1) / 2) * width, vals, width,
               label=f"{MODEL_LABELS.get(m, m)} {k.replace('_36', ' 36/255').replace('_', ' ')}")
    var = {r["subset"]: r["variance_explained"] for r in summary["runs"]}
    ax.set_xticks(x, [f"PCs {s}\nvar. {var[s]:.3f}" for s in subsets], fontsize=8)
    ax.set_ylabel("accuracy / CRA")
    ax.set_ylim(0, 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


@figure("pl_pca_features_cifar10_cpu_reduced", "Training on principal-component ranges of CIFAR-10, "
        "reduced CPU run", paper_ref="Table 1 (reduced)")
def make_pca_cifar_cpu(out_dir: Path) -> Path:
    s = load_result("pca_features_cifar10_cpu_reduced.json")
    n = sorted({r["train_size"] for r in s["runs"]})
    e = sorted({r["epochs"] for r in s["runs"]})
    title = (f"{data_title(s, 'cifar10')}, REDUCED CPU run (train size {', '.join(map(str, n))}, "
             f"{', '.join(map(str, e))} epochs; not the paper's scale)")
    return save_png(_pca_plot(s, title), out_dir, "pl_pca_features_cifar10_cpu_reduced")


def _overfit_plot(summary: dict, title: str):
    import matplotlib.pyplot as plt

    runs = summary["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(6, 3.2 * len(runs)), squeeze=False)
    for ax, r in zip(axes[:, 0], runs):
        c = r["cra_curve"]
        ax.plot(c["eps"], c["train"], "o-", label="train")
        ax.plot(c["eps"], c["test"], "s-", label="test")
        ax.set_title(f"{MODEL_LABELS.get(r['model'], r['model'])} ({title})", fontsize=9)
        ax.set_xlabel("perturbation size (l2)")
        ax.set_ylabel("certified robust accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@figure("pl_robust_overfitting_mnist", "CRA vs radius on train and test after robust overfitting, MNIST",
        paper_ref="Fig. 2 (MNIST)")
def make_overfit_mnist(out_dir: Path) -> Path:
    s = load_result("robust_overfitting_mnist.json")
    return save_png(_overfit_plot(s, "MNIST"), out_dir, "pl_robust_overfitting_mnist")


@figure("pl_robust_overfitting_cifar10", "CRA vs radius on train and test after robust overfitting, CIFAR-10",
        paper_ref="Fig. 2")
def make_overfit_cifar(out_dir: Path) -> Path:
    s = load_result("robust_overfitting_cifar10.json")
    return save_png(_overfit_plot(s, data_title(s, "cifar10")), out_dir, "pl_robust_overfitting_cifar10")


@figure("pl_robust_overfitting_mnist_cpu_small",
        "CRA vs radius on train and test after robust overfitting, MNIST, reduced CPU run",
        paper_ref="Fig. 2 (MNIST, reduced)")
def make_overfit_mnist_cpu(out_dir: Path) -> Path:
    s = load_result("robust_overfitting_mnist_cpu_small.json")
    return save_png(_overfit_plot(s, "MNIST, reduced CPU run"), out_dir, "pl_robust_overfitting_mnist_cpu_small")
