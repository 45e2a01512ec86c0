"""Benchmark: exact nearest-different-label l-inf search (theory.separation) against
scikit-learn NearestNeighbors(metric="chebyshev", algorithm="brute") and faiss-cpu
IndexFlat(d, METRIC_Linf), on the same queries, with identical-distance checks.

    python -m bench.bench_separation --data-root DIR [--n-train 60000] [--n-query 10000]
        [--sk-queries 200] [--faiss-queries 1000]

The baselines have no "different label" filter, so they search one index per label (the
references of all other labels; 10 indexes for MNIST) and take the minimum: the same answer.
scikit-learn and faiss are timed on a subset of the queries (--sk-queries, --faiss-queries) and
their time is extrapolated linearly per query to the full query set (the brute-force cost is
exactly linear in the number of queries); the printout says so. Optional extras: scikit-learn,
faiss-cpu.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from plumbing.cli import OneLineArgumentParser, int_sci, run_main
from plumbing.datasets import load_dataset
from theory.separation import nearest_other_label


def _per_label(search, q, ql, r, rl):
    best = np.full(len(q), np.inf)
    for c in np.unique(rl):
        m = rl != c
        sel = ql == c
        if not sel.any():
            continue
        best[sel] = np.minimum(best[sel], search(q[sel], r[m]))
    return best


def sklearn_search(q, r):
    from sklearn.neighbors import NearestNeighbors
    nn = NearestNeighbors(n_neighbors=1, metric="chebyshev", algorithm="brute").fit(r)
    return nn.kneighbors(q, return_distance=True)[0][:, 0]


def faiss_search(q, r):
    import faiss
    index = faiss.IndexFlat(r.shape[1], faiss.METRIC_Linf)
    index.add(np.ascontiguousarray(r, dtype=np.float32))
    dist, _ = index.search(np.ascontiguousarray(q, dtype=np.float32), 1)
    return dist[:, 0].astype(np.float64)


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog="python -m bench.bench_separation", description=__doc__)
    ap.add_argument("--data-root", default=None,
                    help="MNIST folder (default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--n-train", type=int_sci(2, "--n-train"), default=60000,
                    help="first N MNIST training images as references")
    ap.add_argument("--n-query", type=int_sci(1, "--n-query"), default=10000,
                    help="first N MNIST test images as queries")
    ap.add_argument("--sk-queries", type=int_sci(1, "--sk-queries"), default=200,
                    help="queries timed with scikit-learn (extrapolated)")
    ap.add_argument("--faiss-queries", type=int_sci(1, "--faiss-queries"), default=1000,
                    help="queries timed with faiss (extrapolated)")
    args = ap.parse_args(argv)
    x, y = load_dataset("mnist", "train", args.data_root)
    xt, yt = load_dataset("mnist", "test", args.data_root)
    r = x[: args.n_train].reshape(min(args.n_train, len(x)), -1)
    rl = y[: args.n_train]
    q = xt[: args.n_query].reshape(min(args.n_query, len(xt)), -1)
    ql = yt[: args.n_query]
    nearest_other_label(q[:32], ql[:32], r[:512], rl[:512])  # load/compile the numba kernels
    t = time.perf_counter()
    ours, _ = nearest_other_label(q, ql, r, rl, "inf")
    t_ours = time.perf_counter() - t
    print(f"queries {len(q)} (MNIST test) vs {len(r)} references (MNIST train), l-inf, "
          f"nearest reference with a different label; machine shared, timings noisy")
    print(f"ours (theory.separation, numba, uint8):    {t_ours:9.2f} s  ({t_ours / len(q) * 1e3:.3f} ms/query)")
    rf = r.astype(np.float32)
    qf = q.astype(np.float32)
    for name, fn, n_sub in (("scikit-learn chebyshev brute", sklearn_search, args.sk_queries),
                            ("faiss IndexFlat METRIC_Linf", faiss_search, args.faiss_queries)):
        try:
            __import__("sklearn" if "scikit" in name else "faiss")
        except ImportError:
            print(f"{name}: not installed (optional 'bench' extra); skipped")
            continue
        n_sub = min(n_sub, len(q))
        t = time.perf_counter()
        theirs = _per_label(fn, qf[:n_sub], ql[:n_sub], rf, rl)
        el = time.perf_counter() - t
        full = el / n_sub * len(q)
        same = np.array_equal(theirs, ours[:n_sub])
        print(f"{name:42s} {el:9.2f} s on {n_sub} queries -> {full:9.1f} s extrapolated to "
              f"{len(q)} ({el / n_sub * 1e3:.3f} ms/query); identical distances: {same}; "
              f"ratio {full / t_ours:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m bench.bench_separation"))
