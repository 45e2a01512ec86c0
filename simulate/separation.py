"""Exact r-separation of a dataset: the Table 1 row (and Table 8 with --random-labels) of
YRZSC Section 3 / Appendix C.

    python -m simulate.separation --dataset mnist --data-root DIR --norm inf [--random-labels SEED]
        [--drop-conflicts] [--json PATH] [--hist PNG] [--force]

Prints min and mean train-train and test-train nearest-different-label distances (pixel units
[0, 1] for image datasets) with the index pairs achieving the minima, and a report of exact
duplicates carrying different labels (dropped only with --drop-conflicts). ``--dataset npz``
reads arrays x_train, y_train and optionally x_test, y_test from the .npz file given as
--data-root. The data root defaults to $ROBUSTGEN_DATA, else ~/.robustgen/data.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from plumbing.cli import OneLineArgumentParser, UsageError, add_force_arg, run_main
from plumbing.datasets import dataset_arg, load_splits_with_fidelity
from plumbing.fidelity import display_name, unknown
from plumbing.io import atomic_write_json, check_output_file, load_npz, provenance
from plumbing.sweep import add_engine_args, check_engine_args
from simulate.sweeps import separation_row_sharded
from theory.separation import (conflicting_duplicates, cross_conflicts, drop_conflicts, histogram,
                               random_labels)

DATASETS = ("mnist", "fashion-mnist", "cifar10", "svhn", "npz")


def _load(args):
    if args.dataset == "npz":
        if args.data_root is None:
            raise UsageError("--dataset npz needs --data-root pointing to the .npz file")
        path = Path(args.data_root)
        if not path.is_file():
            raise UsageError(f"npz file not found: {path}")
        z = load_npz(path)
        if "x_train" not in z or "y_train" not in z:
            raise UsageError(f"{path} must hold arrays x_train and y_train (and optionally x_test, y_test)")
        xtr, ytr = z["x_train"], z["y_train"]
        xte = z.get("x_test")
        yte = z.get("y_test")
        if (xte is None) != (yte is None):
            raise UsageError("x_test and y_test must be given together")
        return xtr, ytr, xte, yte, unknown("npz", str(path), "arrays from an .npz file; no official checksums")
    return load_splits_with_fidelity(args.dataset, args.data_root)


def _validate(xtr, ytr, xte, yte):
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        if x is None:
            continue
        if x.ndim < 2 or len(x) == 0:
            raise UsageError(f"{name} images must be a non-empty array of rows, got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise UsageError(f"{name} labels must have one entry per image ({len(x)}), got shape {y.shape}")
        if x.dtype.kind not in "uif" or y.dtype.kind not in "iu":
            raise UsageError(f"{name} images must be numeric and labels integer")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise UsageError(f"{name} images contain NaN or infinite values")
    if xte is not None and xte[0].size != xtr[0].size:
        raise UsageError(f"train and test images differ in size: {xtr[0].size} vs {xte[0].size}")
    if len(np.unique(ytr)) < 2:
        raise UsageError("train labels have only one class: separation needs at least two")


def search_kernels_cold() -> bool:
    """True when numba has no cached machine code of theory.separation's search kernels newer
    than its source (the first run then compiles them for about 40 s)."""
    import os

    import theory.separation as sep

    src = Path(sep.__file__)
    dirs = [src.parent / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        dirs.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    mtime = src.stat().st_mtime
    for d in dirs:
        for f in d.rglob("separation.*.nbi") if d.is_dir() else ():
            if f.stat().st_mtime >= mtime:
                return False
    return True


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog="python -m simulate.separation", description=__doc__)
    ap.add_argument("--dataset", required=True, type=dataset_arg(*DATASETS), metavar="NAME",
                    help=f"dataset to measure (required): one of {', '.join(DATASETS)}, or "
                         f"imagefolder:<path> (one folder per class); npz: arrays from the file "
                         f"given as --data-root")
    ap.add_argument("--data-root", default=None,
                    help="data folder, or the .npz file with --dataset npz "
                         "(default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--norm", default="inf", choices=("inf", "2"), help="distance: l-inf or l2")
    ap.add_argument("--random-labels", type=int, default=None, metavar="SEED",
                    help="Table 8: replace train/test labels by seeded uniform random labels "
                         "(default: the original labels)")
    ap.add_argument("--drop-conflicts", action="store_true",
                    help="drop every training point in a group of exact duplicates with different labels")
    ap.add_argument("--json", default=None, metavar="PATH",
                    help="write the row, histograms and provenance as JSON (default: not written)")
    ap.add_argument("--hist", default=None, metavar="PNG",
                    help="PNG with the train-train / test-train histograms (default: not drawn)")
    add_force_arg(ap)
    add_engine_args(ap)
    args = ap.parse_args(argv)
    engine = check_engine_args(args)
    if args.random_labels is not None and args.random_labels < 0:
        raise UsageError(f"--random-labels must be a seed >= 0, got {args.random_labels}")
    check_output_file(args.json, "--json", force=args.force)
    check_output_file(args.hist, "--hist", force=args.force)

    t0 = time.perf_counter()
    xtr, ytr, xte, yte, fidelity = _load(args)
    xtr, xte = np.asarray(xtr), None if xte is None else np.asarray(xte)
    ytr, yte = np.asarray(ytr), None if yte is None else np.asarray(yte)
    _validate(xtr, ytr, xte, yte)
    if args.random_labels is not None:
        ytr = random_labels(ytr, args.random_labels)
        if yte is not None:
            yte = random_labels(yte, args.random_labels + 1)
    groups = conflicting_duplicates(xtr, ytr)
    cross = cross_conflicts(xte, yte, xtr, ytr) if xte is not None else []
    kept = np.arange(len(xtr))
    if args.drop_conflicts and groups:
        xtr, ytr, kept = drop_conflicts(xtr, ytr)
        if len(np.unique(ytr)) < 2:
            raise UsageError("after dropping conflicting duplicates only one class is left")
    if search_kernels_cold():
        print("compiling the search kernels (first run only, ~40 s)...", file=sys.stderr, flush=True)
    t1 = time.perf_counter()
    row = separation_row_sharded(xtr, ytr, xte, yte, args.norm, **engine)
    seconds = time.perf_counter() - t1
    pairs = row.argmin_pairs()
    # report indices in the original (undropped) training numbering
    pairs["train_train"] = [int(kept[pairs["train_train"][0]]), int(kept[pairs["train_train"][1]])]
    if "test_train" in pairs:
        pairs["test_train"] = [pairs["test_train"][0], int(kept[pairs["test_train"][1]])]
    label = "random labels (seed %d)" % args.random_labels if args.random_labels is not None else "original labels"
    print(f"{args.dataset} l{args.norm} {label}: n_train={len(xtr)} n_test={0 if xte is None else len(xte)}")
    print(f"  {fidelity.line()}")
    print(f"  train-train  min {row.train_train_min:.4f}  mean {row.train_train_mean:.4f}  "
          f"pair (train {pairs['train_train'][0]}, train {pairs['train_train'][1]})")
    if xte is not None:
        print(f"  test-train   min {row.test_train_min:.4f}  mean {row.test_train_mean:.4f}  "
              f"pair (test {pairs['test_train'][0]}, train {pairs['test_train'][1]})")
    print(f"  conflicting duplicate groups in train: {len(groups)}"
          f"{' (dropped ' + str(sum(len(g) for g in groups)) + ' points)' if args.drop_conflicts and groups else ''};"
          f" test/train conflicting duplicates: {len(cross)}")
    print(f"  search time {seconds:.2f} s (total {time.perf_counter() - t0:.2f} s)")
    out = {
        "dataset": args.dataset, "norm": args.norm, "scale": row.scale,
        "random_labels_seed": args.random_labels, "drop_conflicts": bool(args.drop_conflicts),
        "n_train": int(len(xtr)), "n_test": 0 if xte is None else int(len(xte)),
        "train_train_min": row.train_train_min, "train_train_mean": row.train_train_mean,
        "test_train_min": row.test_train_min, "test_train_mean": row.test_train_mean,
        "argmin_pairs": pairs, "conflicting_duplicates": groups, "test_train_conflicts": cross,
        "seconds": seconds,
        **fidelity.as_json(),
        "provenance": provenance(seed=args.random_labels, wall_seconds=time.perf_counter() - t0, device="cpu"),
    }
    if args.hist:
        _hist_png(row, args, Path(args.hist), f"{display_name(args.dataset)}{fidelity.title_suffix()}")
        out["hist"] = str(args.hist)
    if args.json:
        # uint8 l-inf distances are multiples of 1/scale: lattice-aligned bins (no stripes)
        integer = np.issubdtype(xtr.dtype, np.integer)
        lattice = 1.0 / row.scale if (args.norm == "inf" and integer) else None
        out["train_train_hist"] = [a.tolist() for a in histogram(row.train_train, 50, lattice=lattice)]
        if xte is not None:
            out["test_train_hist"] = [a.tolist() for a in histogram(row.test_train, 50, lattice=lattice)]
        atomic_write_json(args.json, out)
    return 0


def _hist_png(row, args, path: Path, data_title: str) -> None:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from plumbing.io import atomic_write_bytes

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, vals, title in ((axes[0], row.train_train, "train-train (Fig. 5)"),
                            (axes[1], row.test_train, "test-train (Fig. 2)")):
        if vals.size:
            ax.hist(vals, bins=50)
        ax.set_title(f"{data_title}: {title}", fontsize=9)
        ax.set_xlabel(f"l{args.norm} distance to nearest\nother-label train point")
        ax.set_ylabel("count")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m simulate.separation"))
