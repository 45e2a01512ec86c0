"""Benchmark: exact nearest-different-label search (theory.separation) against scikit-learn
NearestNeighbors(algorithm="brute") and faiss-cpu IndexFlat, on the same queries.

    python -m bench.bench_separation --data-root DIR [--cifar-root DIR | --cifar-npz FILE]
        [--rows mnist-inf,mnist-l2,cifar-inf,l2-small]
        [--n-train N] [--n-query N] [--sk-queries 200] [--faiss-queries 1000]

Row ``l2-small``: the uint8 l2 projection kernel against the GEMM path and the default choice
between them, train-train on the first N MNIST (and, given, CIFAR-10) training images for a few N.
Rows: ``mnist-inf`` (MNIST test vs train, l-inf), ``mnist-l2`` (the same in l2) and ``cifar-inf``
(CIFAR-10 test vs train, l-inf; CIFAR-10 here is the JPEG-approximate copy, read from an .npz with
x_train, y_train, x_test, y_test as uint8 rows, or loaded from --cifar-root). The
baselines have no "different label" filter, so they search one index per label (the references
of all other labels; 10 indexes) and take the minimum: the same answer. scikit-learn and faiss
are timed on a subset of the queries (--sk-queries, --faiss-queries) and their time is
extrapolated linearly per query to the full query set (the brute-force cost is exactly linear in
the number of queries); the printout says so. l-inf distances are compared for identity; l2
distances of faiss (float32, squared) are compared by their largest relative difference.
Optional extras: scikit-learn, faiss-cpu.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from plumbing.cli import OneLineArgumentParser, UsageError, int_sci, run_main
from plumbing.datasets import load_dataset
from theory.separation import nearest_other_label

ROWS = ("mnist-inf", "mnist-l2", "cifar-inf", "l2-small")
SMALL_SIZES = (2, 50, 500, 2000, 5000)


def _per_label(search, q, ql, r, rl):
    best = np.full(len(q), np.inf)
    for c in np.unique(rl):
        m = rl != c
        sel = ql == c
        if not sel.any():
            continue
        best[sel] = np.minimum(best[sel], search(q[sel], r[m]))
    return best


def sklearn_search(norm):
    def search(q, r):
        from sklearn.neighbors import NearestNeighbors
        metric = "chebyshev" if norm == "inf" else "euclidean"
        nn = NearestNeighbors(n_neighbors=1, metric=metric, algorithm="brute").fit(r)
        return nn.kneighbors(q, return_distance=True)[0][:, 0]
    return search


def faiss_search(norm):
    def search(q, r):
        import faiss
        if norm == "inf":
            index = faiss.IndexFlat(r.shape[1], faiss.METRIC_Linf)
        else:
            index = faiss.IndexFlatL2(r.shape[1])
        index.add(np.ascontiguousarray(r, dtype=np.float32))
        dist, _ = index.search(np.ascontiguousarray(q, dtype=np.float32), 1)
        dist = dist[:, 0].astype(np.float64)
        return dist if norm == "inf" else np.sqrt(np.maximum(dist, 0.0))
    return search


def _data(row, args):
    if row.startswith("mnist"):
        x, y = load_dataset("mnist", "train", args.data_root)
        xt, yt = load_dataset("mnist", "test", args.data_root)
        name = "MNIST"
    elif args.cifar_npz:
        z = np.load(args.cifar_npz)
        x, y, xt, yt = z["x_train"], z["y_train"], z["x_test"], z["y_test"]
        name = "CIFAR-10, JPEG-approximate"
    else:
        from plumbing.datasets import load_dataset_with_fidelity
        x, y, fid = load_dataset_with_fidelity("cifar10", "train", args.cifar_root)
        xt, yt, _ = load_dataset_with_fidelity("cifar10", "test", args.cifar_root)
        name = "CIFAR-10" + (", JPEG-approximate" if fid.approximate else "")
    r = x[: args.n_train].reshape(min(args.n_train, len(x)), -1)
    q = xt[: args.n_query].reshape(min(args.n_query, len(xt)), -1)
    return name, q, yt[: len(q)], r, y[: len(r)]


def bench_row(row, args) -> None:
    name, q, ql, r, rl = _data(row, args)
    norm = "inf" if row.endswith("inf") else "2"
    nearest_other_label(q[:32], ql[:32], r[:512], rl[:512], norm)  # load/compile the numba kernels
    t = time.perf_counter()
    ours, _ = nearest_other_label(q, ql, r, rl, norm)
    t_ours = time.perf_counter() - t
    print(f"[{row}] queries {len(q)} ({name} test) vs {len(r)} references ({name} train), l{norm}, "
          f"nearest reference with a different label; machine shared, timings noisy")
    print(f"ours (theory.separation, numba, uint8):    {t_ours:9.2f} s  ({t_ours / len(q) * 1e3:.3f} ms/query)")
    rf = r.astype(np.float32)
    qf = q.astype(np.float32)
    for label, fn, n_sub in (("scikit-learn brute", sklearn_search(norm), args.sk_queries),
                             ("faiss IndexFlat", faiss_search(norm), args.faiss_queries)):
        try:
            __import__("sklearn" if "scikit" in label else "faiss")
        except ImportError:
            print(f"{label}: not installed (optional 'bench' extra); skipped")
            continue
        n_sub = min(n_sub, len(q))
        t = time.perf_counter()
        theirs = _per_label(fn, qf[:n_sub], ql[:n_sub], rf, rl)
        el = time.perf_counter() - t
        full = el / n_sub * len(q)
        if norm == "inf":
            agree = f"identical distances: {np.array_equal(theirs, ours[:n_sub])}"
        else:
            rel = np.max(np.abs(theirs - ours[:n_sub]) / np.maximum(ours[:n_sub], 1e-300))
            agree = f"max relative difference {rel:.1e}"
        print(f"{label:42s} {el:9.2f} s on {n_sub} queries -> {full:9.1f} s extrapolated to "
              f"{len(q)} ({el / n_sub * 1e3:.3f} ms/query); {agree}; ratio {full / t_ours:8.1f}x")


def _best_of(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_small(args) -> None:
    """uint8 l2, train-train on the first N training images: the projection kernel (forced), the
    blocked GEMM path (forced) and the default (cost-model) choice, at a few sizes N; best of 3
    (1 for N >= 2000). Shows that the default is never much slower than the faster path."""
    import theory.separation as sep

    name, _, _, r, rl = _data("mnist-l2", args)
    sets = [(name, r, rl)]
    if args.cifar_npz or args.cifar_root:
        name, _, _, r, rl = _data("cifar-inf", args)
        sets.append((name, r, rl))
    warm = np.zeros((4, 8), np.uint8)
    sep._L2_U8_KERNEL = True
    nearest_other_label(warm, [0, 1, 0, 1], warm, [0, 1, 0, 1], "2")   # load the compiled kernel
    print("[l2-small] uint8 l2 train-train on the first N training images; seconds, best of 3 "
          "(1 for N >= 2000); machine shared, timings noisy")
    print(f"{'data':28s} {'d':>5s} {'N':>6s} {'kernel':>9s} {'GEMM':>9s} {'default':>9s}  default path")
    try:
        for name, r, rl in sets:
            for n in SMALL_SIZES:
                if n > len(r):
                    continue
                x, y = r[:n], rl[:n]
                reps = 3 if n < 2000 else 1
                times = {}
                for mode in (True, False, "auto"):
                    sep._L2_U8_KERNEL = mode
                    times[mode], out = _best_of(lambda: nearest_other_label(x, y, x, y, "2"), reps)
                    if mode is True:
                        ref = out[0]
                    elif not np.array_equal(out[0], ref):
                        raise AssertionError(f"l2 paths disagree at N={n}")
                path = "kernel" if sep._l2_u8_use_kernel(n, n, x.shape[1]) else "GEMM"
                print(f"{name:28s} {x.shape[1]:5d} {n:6d} {times[True]:9.4f} {times[False]:9.4f} "
                      f"{times['auto']:9.4f}  {path}")
    finally:
        sep._L2_U8_KERNEL = "auto"


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog="python -m bench.bench_separation", description=__doc__)
    ap.add_argument("--data-root", default=None,
                    help="MNIST folder (default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--cifar-npz", default=None,
                    help="CIFAR-10 as .npz (x_train, y_train, x_test, y_test uint8) for the cifar-inf row")
    ap.add_argument("--cifar-root", default=None,
                    help="CIFAR-10 folder for the cifar-inf row (official batches or the JPEG copy)")
    ap.add_argument("--rows", default="mnist-inf",
                    help=f"comma-separated rows among {', '.join(ROWS)}")
    ap.add_argument("--n-train", type=int_sci(2, "--n-train"), default=60000,
                    help="first N training images as references")
    ap.add_argument("--n-query", type=int_sci(1, "--n-query"), default=10000,
                    help="first N test images as queries")
    ap.add_argument("--sk-queries", type=int_sci(1, "--sk-queries"), default=200,
                    help="queries timed with scikit-learn (extrapolated)")
    ap.add_argument("--faiss-queries", type=int_sci(1, "--faiss-queries"), default=1000,
                    help="queries timed with faiss (extrapolated)")
    args = ap.parse_args(argv)
    rows = [s.strip() for s in args.rows.split(",") if s.strip()]
    bad = [s for s in rows if s not in ROWS]
    if bad or not rows:
        raise UsageError(f"--rows must be a comma-separated list of {', '.join(ROWS)}; got {args.rows!r}")
    if "cifar-inf" in rows and not (args.cifar_npz or args.cifar_root):
        raise UsageError("--rows cifar-inf needs --cifar-root DIR or --cifar-npz FILE")
    for row in rows:
        if row == "l2-small":
            bench_small(args)
        else:
            bench_row(row, args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m bench.bench_separation"))
