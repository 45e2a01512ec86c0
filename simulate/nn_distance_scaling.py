"""Nearest-neighbour distance against training-set size (P&L Section 12, Fig. 13; Section 9.4).

For nested training subsets of the given sizes (the first n points of one seeded permutation),
the distance from every test query to its nearest training point is computed exactly
(``theory.knn.nearest_neighbor``; ℓ2 via BLAS, angular = angle between the vectors). Per size
the median r*(n), mean and quartiles are printed; per norm the intrinsic dimension
d* = −1/slope of log r* against log n (Section 12), the linear-log fit r* ≈ a + b ln n with its R²
(Section 9.4), and the Levina–Bickel MLE of d* on a subset for comparison. The paper's CIFAR-10
value d* ≈ 28 is printed as a reference (a different dataset, not a target).

--dataset synthetic: uniform points of a d*-dimensional cube in a random d*-dimensional
subspace of R^D (--d-star, --ambient; known intrinsic dimension), with the Eq. (26) check at the
cube centre, where p(r) = c r^{d*} holds exactly (c = unit-ball volume): the Monte Carlo median of
the centre's nearest-neighbour distance beside the exact median and the bounds
(2cn)^{−1/d*} ≤ r* ≤ (cn)^{−1/d*}.
--dataset mnist: real MNIST train subsets (pixels scaled to [0, 1]) and --queries test images
(fashion-mnist, cifar10 and imagefolder:<path> likewise; CIFAR-10 from the official python batches
or from the JPEG image-folder copy, which every output then marks as approximate; see docs/cifar10.md).

    python -m simulate.nn_distance_scaling --dataset mnist [--data-root DIR] [--sizes 64,...]
                                           [--norm 2,angular] [--json PATH [--force]]

Nothing is written without --json.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from plumbing.cli import OneLineArgumentParser, add_force_arg, csv_list, int_sci, run_main
from plumbing.datasets import dataset_arg
from plumbing.memory import check_fits, nn_distance_bytes
from theory.constants import CIFAR10_INTRINSIC_DIM_REFERENCE
from theory.intrinsic_dim import levina_bickel_report
from plumbing.io import atomic_write_json, check_output_file, provenance
from theory.knn import nearest_neighbor
from theory.nn_scaling import (centre_median_nn_distance, check_sizes, embedded_uniform, eq26_bounds,
                               exact_median_radius, linear_log_fit, median_quantile_interval,
                               random_orthonormal, slope_intrinsic_dimension, unit_ball_volume)
from plumbing.progress import progress

from .json_checkpoint import Checkpoint

RESUMABLE = ("interrupted; rerun the same command to resume from the last checkpoint (kept only with "
             "--json or --checkpoint)")
PROG = "python -m simulate.nn_distance_scaling"

DATASETS = ("synthetic", "mnist", "fashion-mnist", "cifar10")
MNIST_SIZES = [2 ** k for k in range(6, 16)]
IMAGE_FEATURES = {"mnist": 784, "fashion-mnist": 784, "cifar10": 3072}
SYNTH_SIZES = [2 ** k for k in range(6, 14)]


def load_points(args, rng):
    """(train, queries, Fidelity) for the chosen dataset (float arrays)."""
    from plumbing.fidelity import Fidelity

    if args.dataset == "synthetic":
        basis = random_orthonormal(args.d_star, args.ambient, rng)
        train = embedded_uniform(args.sizes[-1], args.d_star, args.ambient, rng, basis)
        queries = embedded_uniform(args.queries, args.d_star, args.ambient, rng, basis)
        return train, queries, Fidelity("synthetic", "unknown", False, "synthetic data")
    from plumbing.datasets import load_splits_with_fidelity

    xtr, _, xte, _, fidelity = load_splits_with_fidelity(args.dataset, args.data_root)
    if args.sizes[-1] > len(xtr):
        raise ValueError(f"--sizes must be <= {len(xtr)} ({args.dataset} training images), "
                         f"got {args.sizes[-1]}")
    if args.queries > len(xte):
        raise ValueError(f"--queries must be <= {len(xte)}, got {args.queries}")
    order = rng.permutation(len(xtr))[:args.sizes[-1]]
    q = rng.permutation(len(xte))[:args.queries]
    train = xtr[order].reshape(len(order), -1).astype(np.float32) / 255.0
    queries = xte[q].reshape(len(q), -1).astype(np.float32) / 255.0
    return train, queries, fidelity


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=dataset_arg(*DATASETS), default="synthetic", metavar="NAME",
                    help="synthetic, mnist, fashion-mnist, cifar10, or imagefolder:<path> "
                         "(default synthetic; CIFAR-10: see docs/cifar10.md)")
    ap.add_argument("--data-root", default=None, help="dataset root (default $ROBUSTGEN_DATA)")
    ap.add_argument("--sizes", type=csv_list(int_sci(1, "--sizes"), "--sizes"), default=None,
                    help="strictly increasing training-set sizes (default 2^6..2^15 for mnist, "
                         "2^6..2^13 for synthetic)")
    ap.add_argument("--norm", type=csv_list(str, "--norm"), default=None,
                    help="comma-separated norms among 2, angular, inf (default 2,angular for mnist, 2 "
                         "for synthetic)")
    ap.add_argument("--queries", type=int_sci(1, "--queries"), default=1000, help="test queries")
    ap.add_argument("--d-star", type=int_sci(1, "--d-star"), default=4, help="synthetic: intrinsic dimension")
    ap.add_argument("--ambient", type=int_sci(1, "--ambient"), default=32, help="synthetic: ambient dimension")
    ap.add_argument("--centre-trials", type=int_sci(10, "--centre-trials"), default=300,
                    help="synthetic: Monte Carlo trials of the Eq. (26) centre check")
    ap.add_argument("--lb-points", type=int_sci(0, "--lb-points"), default=2000,
                    help="points for the Levina-Bickel estimate (0 = skip)")
    ap.add_argument("--lb-k", type=csv_list(int_sci(2, "--lb-k"), "--lb-k"), default=[10, 20],
                    help="Levina-Bickel k1,k2")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="seed, >= 0")
    ap.add_argument("--json", metavar="PATH", help="write rows and summary as JSON (default: not written)")
    ap.add_argument("--checkpoint", metavar="PATH",
                    help="checkpoint file (default <json>.ckpt; none without --json)")
    add_force_arg(ap)
    args = ap.parse_args(argv)
    check_output_file(args.json, "--json", force=args.force)
    check_output_file(args.checkpoint, "--checkpoint", existing="replace")

    if args.sizes is None:
        args.sizes = list(SYNTH_SIZES if args.dataset == "synthetic" else MNIST_SIZES)
    args.sizes = check_sizes(args.sizes, "--sizes")
    if len(args.sizes) < 2:
        raise ValueError("--sizes needs at least 2 sizes for the fits")
    if args.norm is None:
        args.norm = ["2"] if args.dataset == "synthetic" else ["2", "angular"]
    for nm in args.norm:
        if nm not in ("2", "angular", "inf"):
            raise ValueError(f"--norm must be among 2, angular, inf; got {nm!r}")
    if args.dataset == "synthetic" and args.ambient < args.d_star:
        raise ValueError(f"--ambient must be >= --d-star ({args.d_star}), got {args.ambient}")
    if len(args.lb_k) not in (1, 2) or args.lb_k[0] > args.lb_k[-1]:
        raise ValueError("--lb-k must be k1 or k1,k2 with k1 <= k2")
    synthetic = args.dataset == "synthetic"
    check_fits(nn_distance_bytes(args.sizes[-1], args.queries,
                                 args.ambient if synthetic else IMAGE_FEATURES[args.dataset],
                                 itemsize=8 if synthetic else 4, angular="angular" in args.norm),
               f"--sizes up to {args.sizes[-1]} with --queries {args.queries}",
               "lower the largest --sizes or --queries")

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    train, queries, fidelity = load_points(args, rng)
    if args.dataset != "synthetic":
        print(fidelity.line())
    settings = {k: v for k, v in vars(args).items()
                if k not in ("json", "checkpoint", "data_root", "force")}
    ckpt_path = Path(args.checkpoint) if args.checkpoint else (Path(args.json + ".ckpt") if args.json else None)
    ckpt = Checkpoint(ckpt_path, settings, force=args.force)

    rows = []
    jobs = [(nm, n) for nm in args.norm for n in args.sizes]
    for nm, n in progress(jobs, desc="nn distance"):
        key = f"{nm}|{n}"
        row = ckpt.get(key)
        if row is None:
            dist, _ = nearest_neighbor(queries, train[:n], nm)
            row = {"dataset": args.dataset, "norm": nm, "n": n, "median": float(np.median(dist)),
                   "mean": float(dist.mean()), "q25": float(np.quantile(dist, 0.25)),
                   "q75": float(np.quantile(dist, 0.75))}
            ckpt.put(key, row)
        rows.append(row)

    summary = []
    for nm in args.norm:
        rs = [r for r in rows if r["norm"] == nm]
        med = [r["median"] for r in rs]
        d_slope, loglog = slope_intrinsic_dimension(args.sizes, med)
        lin = linear_log_fit(args.sizes, med)
        entry = {"norm": nm, "d_star_slope": d_slope, "loglog_slope": loglog.slope, "loglog_r2": loglog.r2,
                 "linlog_slope_per_doubling": lin.slope * np.log(2.0), "linlog_r2": lin.r2,
                 "reference_cifar10_d_star": CIFAR10_INTRINSIC_DIM_REFERENCE}
        if args.lb_points:
            m = min(args.lb_points, len(train))
            lb = levina_bickel_report(train[:m], args.lb_k[0], args.lb_k[-1], norm=nm)
            entry["d_star_levina_bickel"] = lb.estimate
            entry["levina_bickel_points"] = m
            entry["levina_bickel_duplicates_dropped"] = lb.duplicates_dropped
        if args.dataset == "synthetic":
            entry["d_star_true"] = args.d_star
        summary.append(entry)

    eq26 = []
    if args.dataset == "synthetic":
        c = unit_ball_volume(args.d_star)
        crng = np.random.default_rng([args.seed, 26])
        for n in args.sizes:
            r_exact = exact_median_radius(c, args.d_star, n)
            if r_exact > 0.5:      # p(r) = c r^d* only while the ball stays inside the cube
                continue
            samples = centre_median_nn_distance(n, args.d_star, args.ambient, trials=args.centre_trials, rng=crng)
            lo, hi = median_quantile_interval(samples)
            rl, ru = eq26_bounds(c, args.d_star, n)
            eq26.append({"n": n, "r_lower": rl, "r_star_exact": r_exact, "r_star_mc": float(np.median(samples)),
                         "mc_interval": [lo, hi], "r_upper": ru,
                         "within_bounds": bool(rl <= r_exact <= ru and hi >= rl and lo <= ru)})

    print(f"{'norm':>7} {'n':>7} {'median r*':>10} {'mean':>9} {'q25':>9} {'q75':>9}")
    for r in rows:
        print(f"{r['norm']:>7} {r['n']:>7} {r['median']:>10.4f} {r['mean']:>9.4f} {r['q25']:>9.4f} {r['q75']:>9.4f}")
    print()
    for s in summary:
        lb = f"{s['d_star_levina_bickel']:.2f}" if "d_star_levina_bickel" in s else "-"
        true = f"  true d* = {s['d_star_true']}" if "d_star_true" in s else ""
        print(f"norm {s['norm']}: d* from slope = {s['d_star_slope']:.2f} (log-log R^2 {s['loglog_r2']:.4f}); "
              f"Levina-Bickel d* = {lb}; r* change per doubling of n = {s['linlog_slope_per_doubling']:.4f} "
              f"(linear-log R^2 {s['linlog_r2']:.4f}); paper's CIFAR-10 reference d* ~ "
              f"{s['reference_cifar10_d_star']}{true}")
    if eq26:
        print()
        print(f"Eq. (26) at the cube centre (d* = {args.d_star}, c = {unit_ball_volume(args.d_star):.4f}):")
        print(f"{'n':>7} {'(2cn)^-1/d':>11} {'r* exact':>9} {'r* MC':>9} {'(cn)^-1/d':>10} ok")
        for e in eq26:
            print(f"{e['n']:>7} {e['r_lower']:>11.4f} {e['r_star_exact']:>9.4f} {e['r_star_mc']:>9.4f} "
                  f"{e['r_upper']:>10.4f} {'yes' if e['within_bounds'] else 'NO'}")

    if args.json:
        atomic_write_json(args.json, {
            "rows": rows, "summary": summary, "eq26": eq26, "settings": settings, **fidelity.as_json(),
            "provenance": provenance(seed=args.seed, wall_seconds=time.perf_counter() - t0, device="cpu"),
        })
    ckpt.done()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
