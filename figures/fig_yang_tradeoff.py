"""Adversarial test accuracy against test local Lipschitzness (YRZSC Eq. 3) per training method,
MNIST CNN1 (YRZSC Sec. 5.2: "local Lipschitzness appears mostly correlated with adversarial
accuracy"). Reads the combined tables of ``python -m deep.tradeoff_table`` under ``results/``:
the paper-scale run if committed and the reduced CPU run, each as its own panel."""
from __future__ import annotations

from pathlib import Path

from figures.data_title import data_title
from figures.registry import figure, save_png
from paper_checks.registry import RESULTS_DIR, NeedsData
from plumbing.io import read_json

SOURCES = (("tradeoff_table_mnist_cnn1.json", "paper-scale run"),
           ("tradeoff_table_mnist_cnn1_cpu_small_8methods.json", "reduced CPU run, 8 methods"),
           ("tradeoff_table_mnist_cnn1_cpu_small.json", "reduced CPU run, 3 methods"))


def available_tables() -> list[tuple[str, dict]]:
    out = []
    for name, what in SOURCES:
        p = RESULTS_DIR / name
        if p.is_file():
            out.append((what, read_json(p)))
    if not out:
        raise NeedsData("no committed MNIST CNN1 trade-off table under results/ "
                        f"({', '.join(n for n, _ in SOURCES)}); run python -m deep.tradeoff_table")
    return out


@figure("yang_tradeoff", "adversarial test accuracy vs test local Lipschitzness per method "
        "(MNIST CNN1)", paper_ref="YRZSC Tables 2, 9 / Sec. 5.2")
def make(out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    tables = available_tables()
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 4.0), squeeze=False)
    for ax, (what, t) in zip(axes[0], tables):
        rows = t["rows"]
        for r in rows:
            ax.scatter(r["test_lipschitz"], r["adv_test_acc"], s=36)
            ax.annotate(r["label"], (r["test_lipschitz"], r["adv_test_acc"]),
                        textcoords="offset points", xytext=(4, 3), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("test local Lipschitz constant, Eq. (3) (log scale)")
        ax.set_ylabel(f"adversarial test accuracy (%), {t['config'].get('attack', 'pgd').upper()}")
        ax.set_title(f"{data_title(t, t['config'].get('dataset', 'mnist'))} CNN1, "
                     f"eps={t['config'].get('eps')}: {what}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(0.15)
    labels = [f"{what}: {t['label']}" for what, t in tables if t.get("label")]
    fig.tight_layout(rect=(0, 0.08 * bool(labels), 1, 1))
    if labels:
        fig.text(0.01, 0.01, "\n".join(labels), fontsize=6, va="bottom", wrap=True)
    return save_png(fig, Path(out_dir), "yang_tradeoff")
