"""Benchmark: exact robust radius of the l2-metric 1-NN (theory.nn_exact) on MNIST, the current
chunked best-first search against the previous one-query-at-a-time implementation
(``method="reference"``, theory.nn_exact_reference), on the same few test points and the same
training set (no box: the reference has none), plus the full-MNIST run times recorded by
``python -m simulate.nn_exact_robustness`` in results/nn_exact/*.json.

    python -m bench.bench_nn_exact [--data-root DIR] [--points 2] [--n-train 60000]
        [--norms 2,inf] [--results results/nn_exact]
    python -m bench.bench_nn_exact --full [--engine ray --workers 2] [--norms inf,2] [--points 1]

``--full`` times the whole command, ``python -m simulate.nn_exact_robustness --dataset mnist
--norm N`` (full test set against the full training set, in the pixel box: the command's default
threat model), per norm, from loading the data to the written JSON, against the target of
10 minutes per norm on this machine; its radii are compared with the committed full run of the
same threat model (results/nn_exact/mnist_<norm>_box.npz). The per-point speed-up is then the
reference's seconds per point (``--points`` points, no box: the reference has none) over the full
run's wall seconds per point.

The reference needs tens of seconds per point on the full training set, so only --points test
points are timed for both (the same points, the first of the test set); the current code is also
timed on them alone (its preparation of the training set included, as in one call). Radii of the
two are compared (largest relative difference). Timings on a shared machine say "loaded".
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from plumbing.cli import OneLineArgumentParser, UsageError, csv_list, int_sci, run_main
from plumbing.sweep import add_engine_args, check_engine_args
from plumbing.validation import check_norm

PROG = "python -m bench.bench_nn_exact"


def full_run_rows(folder: Path) -> list[str]:
    lines = []
    for p in sorted(folder.glob("mnist_*.json")):
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            lines.append(f"  {p.name}: unreadable")
            continue
        if d.get("reduced"):
            continue
        lines.append(f"  {p.name}: {d['n_test']} test x {d['n_train']} train, {d['threat_model']}: "
                     f"{d['solve_seconds']:.0f} s solving ({d['seconds_per_test_point']:.4f} s per "
                     f"test point), {d['wall_seconds']:.0f} s wall incl. separation")
    return lines


TARGET_S = 600.0      # target: the full MNIST test set in at most 10 minutes per norm


def full_bench(args, norms: list[str], eng: dict) -> int:
    """Wall time of the full-MNIST command per norm in the box (see module docstring)."""
    import os
    import tempfile

    from plumbing.datasets import load_dataset
    from simulate.nn_exact_robustness import Config, run
    from theory.nn_exact import exact_1nn

    print(f"full MNIST, 10000 test x 60000 training points, pixel box [0, 1]; engine "
          f"{eng['engine']}{'' if eng['workers'] is None else ' with ' + str(eng['workers']) + ' workers'}"
          f"; {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}")
    xtr = xte = ytr = None
    for norm in norms:
        tag = "l2" if norm == "2" else "inf"
        with tempfile.TemporaryDirectory(prefix="bench_nn_exact_") as tmp:
            cfg = Config(dataset="mnist", data_root=args.data_root, norms=[norm], box=True,
                         out=tmp, **eng)
            t = time.perf_counter()
            res = run(cfg)[norm]
            wall = time.perf_counter() - t
            got = np.load(Path(tmp) / f"mnist_{tag}_box.npz")
            radius = got["radius"]
        verdict = "MET" if wall <= TARGET_S else "NOT MET"
        print(f"  l{norm}: {wall:.0f} s wall for the whole command (target <= {TARGET_S:.0f} s: "
              f"{verdict}); {wall / res['n_test']:.4f} s per test point; solving "
              f"{res['solve_wall_seconds']:.0f} s wall ({res['solve_seconds']:.0f} s summed over "
              f"chunks), index {res['index_seconds']:.1f} s, separation "
              f"{res['separation_seconds']:.1f} s; load average after {os.getloadavg()[0]:.2f}")
        ref_npz = Path(args.results) / f"mnist_{tag}_box.npz"
        if ref_npz.is_file():
            old = np.load(ref_npz)["radius"]
            fin = np.isfinite(old) & (old > 0)
            same_support = np.array_equal(fin, np.isfinite(radius) & (radius > 0))
            rel = float(np.max(np.abs(radius[fin] / old[fin] - 1))) if fin.any() else 0.0
            acc = [(row["eps"], row["exact_robust_accuracy"]) for row in res["paper_radii"]]
            print(f"        radii vs the committed {ref_npz.name}: same zero/infinite points "
                  f"{same_support}, max rel. diff {rel:.1e}; exact robust accuracy "
                  + ", ".join(f"{a:.4f} at {e:.4f}" for e, a in acc))
        if args.points:
            if xtr is None:
                xtr, ytr = load_dataset("mnist", "train", args.data_root)
                xte, _ = load_dataset("mnist", "test", args.data_root)
                xtr = xtr.reshape(len(xtr), -1) / 255.0
            q = xte[:args.points].reshape(args.points, -1) / 255.0
            t = time.perf_counter()
            exact_1nn(q, xtr, ytr, norm, method="reference")
            t_ref = (time.perf_counter() - t) / args.points
            print(f"        previous code (reference, no box), first {args.points} test point(s): "
                  f"{t_ref:.1f} s per point -> per-point speed-up x{t_ref * res['n_test'] / wall:.0f}")
    return 0


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None, help="MNIST folder (default: $ROBUSTGEN_DATA)")
    ap.add_argument("--points", type=int_sci(1, "--points", 100), default=2,
                    help="test points timed with both implementations")
    ap.add_argument("--n-train", type=int_sci(2, "--n-train", 60000), default=60000,
                    help="training points (the first ones; default: all)")
    ap.add_argument("--norms", type=csv_list(str, "--norms"), default=["2", "inf"],
                    help="perturbation norms, comma separated")
    ap.add_argument("--results", default="results/nn_exact", help="folder of the full-run JSONs")
    ap.add_argument("--full", action="store_true",
                    help="time the full-MNIST command per norm (box) against the 10-minute target")
    add_engine_args(ap)
    args = ap.parse_args(argv)
    eng = check_engine_args(args)
    try:
        norms = [check_norm("--norms", v) for v in args.norms]
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    if args.full:
        return full_bench(args, norms, eng)

    from plumbing.datasets import load_dataset
    from theory.nn_exact import exact_1nn

    xtr, ytr = load_dataset("mnist", "train", args.data_root)
    xte, _ = load_dataset("mnist", "test", args.data_root)
    xtr = xtr[:args.n_train].reshape(args.n_train, -1) / 255.0
    ytr = ytr[:args.n_train]
    q = xte[:args.points].reshape(args.points, -1) / 255.0
    print(f"MNIST: {args.points} test points x {args.n_train} training points, no box "
          f"(shared machine: loaded timings)")
    for norm in norms:
        t = time.perf_counter()
        new = exact_1nn(q, xtr, ytr, norm)
        t_new = time.perf_counter() - t
        t = time.perf_counter()
        ref = exact_1nn(q, xtr, ytr, norm, method="reference")
        t_ref = time.perf_counter() - t
        rel = float(np.max(np.abs(new.radius / ref.radius - 1))) if np.all(ref.radius > 0) else float("nan")
        print(f"  l{norm}: reference {t_ref / args.points:.2f} s/point, now {t_new / args.points:.3f} "
              f"s/point (one call incl. preparation) -> speed-up x{t_ref / t_new:.1f}; "
              f"radii max rel. diff {rel:.1e}")
        full = Path(args.results) / f"mnist_{'l2' if norm == '2' else 'inf'}_nobox.json"
        if full.is_file():
            d = json.loads(full.read_text())
            print(f"        full-MNIST run (same threat model, amortised): "
                  f"{d['seconds_per_test_point']:.4f} s/point -> speed-up "
                  f"x{t_ref / args.points / d['seconds_per_test_point']:.0f} per point")
    rows = full_run_rows(Path(args.results))
    print("full MNIST runs (results/nn_exact):" if rows else "no full MNIST run recorded yet")
    for line in rows:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
