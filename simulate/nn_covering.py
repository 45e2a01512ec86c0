"""Monte Carlo of P&L Theorem 2: 1-NN certified robust accuracy at margin δ/2 against n.

For each d and δ the training-set sizes are n = ⌈37⌈1/δ⌉^d / 2^j⌉, j = 0..--halvings (so the
Theorem 2 size 37⌈1/δ⌉^d is the largest). Per size, --trials training sets of an ℓ∞-δ-robust
distribution on [0,1]^d (``theory.robust_distributions``; --distribution grid: random-label grid
cells with the δ band around other labels removed; uniform: the one-class uniform special case)
are drawn and --n-test test points are classified by 1-NN (ℓ∞) and certified at δ/2 with the
exact 1-NN certificate. Printed beside the certified robust accuracy: the fraction of test points
with a training point within δ (Eq. 14), the box coverage (Eq. 15, Monte Carlo), the exact
coverage of the uniform special case, and the bound 1 − |B|/(n e) (Eq. 20).

Summary per (d, δ): the smallest n of the grid from which the measured CRA stays ≥ 99% (within
a factor 2: the grid halves) and how many times smaller it is than 37⌈1/δ⌉^d, and the same for
the exact uniform coverage (bisection, exact).

    python -m simulate.nn_covering [--d 1,2,3,4] [--delta 0.2,0.1] [--trials 5] [--seed 0]
                                    [--json results/nn_covering.json [--force]]

Resumable: each finished row is saved in the folder --checkpoint (default: <json>.ckpt) and reused
by a rerun with the same settings; --engine ray runs the rows as parallel Ray tasks. Same seed,
same numbers on either engine (each row has its own seed derived from (seed, d, δ, n)). An
existing --json is refused unless --force.
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from theory.box_covering import (bound_sample_size, coverage_bound, n_boxes, simulate_theorem2,
                                 theorem2_sample_size, uniform_coverage_exact, uniform_n_for_coverage)
from plumbing.cli import (OneLineArgumentParser, UsageError, add_force_arg, csv_list, float_range, int_sci,
                           run_main)
from plumbing.memory import check_fits, nn_covering_bytes
from theory.constants import THM2_SAMPLE_FACTOR, THM2_TARGET_ROBUST_ACC
from plumbing.io import atomic_write_json, check_output_dir, check_output_file, provenance
from plumbing.sweep import add_engine_args, check_engine_args, run_sweep
from simulate.sweeps import THM2, Thm2Config
from theory.robust_distributions import GridRobustDistribution, uniform_cube

RESUMABLE = ("interrupted; rerun the same command to resume from the last checkpoint (kept only with "
             "--json or --checkpoint)")
PROG = "python -m simulate.nn_covering"


def row_seed(seed: int, *parts) -> int:
    """Independent seed per row from (seed, parts) (order of the rows does not matter)."""
    ints = [int(seed)] + [int(round(p * 10 ** 9)) if isinstance(p, float) else int(p) for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(1)[0])


def size_grid(d: int, delta: float, halvings: int) -> list[int]:
    """Sizes ceil(top / 2^j), j = 0..halvings; halvings past log2(top) only repeat size 1, so
    they are not enumerated (a huge --halvings returns at once)."""
    top = theorem2_sample_size(d, delta)
    halvings = min(int(halvings), int(top).bit_length())
    return sorted({max(1, math.ceil(top / 2 ** j)) for j in range(halvings + 1)})


def first_sustained(ns, values, target) -> int | None:
    """Smallest n of the grid from which every value (at it and all larger n) is ≥ target."""
    best = None
    for n, v in sorted(zip(ns, values), reverse=True):
        if v >= target:
            best = n
        else:
            break
    return best


def auto_cells(delta: float) -> int:
    """Largest k with 1/k > 2 delta (the finest grid the construction allows), at least 1."""
    k = max(1, math.ceil(1.0 / (2.0 * delta)) - 1)
    while k > 1 and not 1.0 / k > 2.0 * delta:
        k -= 1
    return k


def make_distribution(kind: str, d: int, delta: float, cells: int, classes: int, seed: int):
    if cells == 0:
        cells = auto_cells(delta)
    if kind == "uniform" or cells == 1 or classes == 1:
        print(f"{PROG}: note: delta={delta}: one cell or one class, i.e. the uniform special case; "
              f"1-NN certified robust accuracy is trivially 1 there (coverage is still informative)",
              file=sys.stderr)
    if kind == "uniform":
        return uniform_cube(d, delta)
    if cells >= 2 and not 1.0 / cells > 2.0 * delta:
        raise UsageError(f"--delta must be < 1/(2*--cells) = {1 / (2 * cells):g} for the grid "
                         f"distribution (got delta={delta}, cells={cells}); use --cells 1 or "
                         f"--distribution uniform for larger delta")
    return GridRobustDistribution(d=d, delta=delta, cells_per_axis=cells, n_classes=classes, seed=seed)


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=csv_list(int_sci(1, "--d"), "--d"), default=[1, 2, 3, 4],
                    help="dimensions, comma-separated (each >= 1)")
    ap.add_argument("--delta", type=csv_list(float_range(0.0, 1.0, low_open=True, high_open=True,
                                                         name="--delta"), "--delta"),
                    default=[0.2, 0.1], help="margins in (0, 1), comma-separated")
    ap.add_argument("--trials", type=int_sci(2, "--trials"), default=5,
                    help="training sets per size (>= 2, for a standard error)")
    ap.add_argument("--n-test", type=int_sci(1, "--n-test"), default=500, help="test points per trial")
    ap.add_argument("--halvings", type=int_sci(0, "--halvings"), default=10,
                    help="sizes 37*ceil(1/delta)^d / 2^j for j = 0..halvings")
    ap.add_argument("--distribution", choices=("grid", "uniform"), default="grid",
                    help="grid: random-label grid cells with the delta band removed; uniform: the "
                         "one-class special case")
    ap.add_argument("--cells", type=int_sci(0, "--cells"), default=0,
                    help="grid cells per axis (needs delta < 1/(2*cells)); 0 = the most allowed, "
                         "ceil(1/(2 delta)) - 1 (at least 1)")
    ap.add_argument("--classes", type=int_sci(1, "--classes"), default=2,
                    help="labels of the grid cells")
    ap.add_argument("--max-n", type=int_sci(1, "--max-n"), default=40_000,
                    help="skip (d, delta) whose Theorem 2 size 37*ceil(1/delta)^d exceeds this")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="seed, >= 0")
    ap.add_argument("--exact", action="store_true",
                    help="also print, on the same sets, the l2-metric 1-NN's certified (lower bound) "
                         "and EXACT robust accuracy at l-inf radius delta/2 (theory.nn_exact, one LP "
                         "per candidate region; slow for large n: use a smaller --n-test)")
    ap.add_argument("--json", metavar="PATH", help="write rows and summary as JSON (default: not written)")
    ap.add_argument("--checkpoint", metavar="PATH",
                    help="checkpoint folder, one JSON per finished row (default <json>.ckpt; none "
                         "without --json)")
    add_force_arg(ap)
    add_engine_args(ap)
    args = ap.parse_args(argv)
    check_output_file(args.json, "--json", force=args.force)
    check_output_dir(args.checkpoint, "--checkpoint")
    engine = check_engine_args(args)

    t0 = time.perf_counter()
    settings = {k: v for k, v in vars(args).items()
                if k not in ("json", "checkpoint", "max_n", "engine", "address", "workers", "force")}
    ckpt_path = Path(args.checkpoint) if args.checkpoint else (Path(args.json + ".ckpt") if args.json else None)
    if ckpt_path is not None and ckpt_path.is_file():
        raise UsageError(f"checkpoint {ckpt_path} is a file from an older version; the checkpoint "
                         "is now a folder of one JSON per row: delete the file and rerun")

    combos, skipped = [], []
    for d in args.d:
        for delta in args.delta:
            dist = make_distribution(args.distribution, d, delta, args.cells, args.classes, args.seed)
            if theorem2_sample_size(d, delta) > args.max_n:
                skipped.append({"d": d, "delta": delta, "n_thm2": theorem2_sample_size(d, delta),
                                "reason": f"37*ceil(1/delta)^d > --max-n {args.max_n}"})
                continue
            combos.append((d, delta, dist))
    if combos:
        d_big, delta_big, _ = max(combos, key=lambda c: nn_covering_bytes(
            theorem2_sample_size(c[0], c[1]), args.n_test, c[0], args.classes))
        check_fits(nn_covering_bytes(theorem2_sample_size(d_big, delta_big), args.n_test, d_big,
                                     args.classes),
                   f"--n-test {args.n_test} at d={d_big}, delta={delta_big:g} "
                   f"(n={theorem2_sample_size(d_big, delta_big)})", "lower --n-test or --max-n")
    for s in skipped:
        print(f"{PROG}: note: skipping d={s['d']} delta={s['delta']} (n_thm2={s['n_thm2']} > "
              f"--max-n {args.max_n})", file=sys.stderr)

    configs = [Thm2Config(d=d, delta=delta, n=n, trials=args.trials, n_test=args.n_test,
                          distribution=args.distribution,
                          cells=getattr(dist, "cells_per_axis", 1), classes=args.classes,
                          dist_seed=args.seed, seed=row_seed(args.seed, d, delta, n))
               for d, delta, dist in combos for n in size_grid(d, delta, args.halvings)]
    rows = run_sweep(THM2, configs, state_dir=ckpt_path, desc="nn_covering", **engine)
    if args.exact:   # same training/test draws as the row (same distribution, same seed)
        from theory.nn_exact import theorem2_exact
        dists = {(d, delta): dist for d, delta, dist in combos}
        for r in rows:
            ex = theorem2_exact(dists[(r["d"], r["delta"])].sample, r["d"], r["delta"], r["n"],
                                trials=args.trials, n_test=args.n_test,
                                seed=row_seed(args.seed, r["d"], r["delta"], r["n"]))
            r["l2nn_certified_accuracy"], r["l2nn_certified_accuracy_stderr"] = ex["l2_nn_certified"]
            r["l2nn_exact_robust_accuracy"], r["l2nn_exact_robust_accuracy_stderr"] = ex["l2_nn_exact"]

    summary = []
    for d, delta, dist in combos:
        rs = [r for r in rows if r["d"] == d and r["delta"] == delta]
        ns = [r["n"] for r in rs]
        n_thm2 = theorem2_sample_size(d, delta)
        n99 = first_sustained(ns, [r["certified_robust_accuracy"] for r in rs], THM2_TARGET_ROBUST_ACC)
        n99_cov = first_sustained(ns, [r["coverage"] for r in rs], THM2_TARGET_ROBUST_ACC)
        n99_near = first_sustained(ns, [r["near_fraction"] for r in rs], THM2_TARGET_ROBUST_ACC)
        n99_uni = uniform_n_for_coverage(d, delta, THM2_TARGET_ROBUST_ACC)
        at_thm2 = next(r for r in rs if r["n"] == n_thm2)
        summary.append({
            "d": d, "delta": delta, "boxes": n_boxes(d, delta), "n_thm2": n_thm2,
            "cells_per_axis": getattr(dist, "cells_per_axis", 1),
            "n_bound_exact": bound_sample_size(d, delta),
            "cra_at_n_thm2": at_thm2["certified_robust_accuracy"],
            "cra_at_n_thm2_stderr": at_thm2["certified_robust_accuracy_stderr"],
            "n99_cra_grid": n99, "looseness_cra": (n_thm2 / n99) if n99 else None,
            "n99_near_grid": n99_near, "n99_coverage_grid": n99_cov,
            "n99_uniform_coverage_exact": n99_uni, "looseness_uniform_coverage": n_thm2 / n99_uni,
        })

    hdr = (f"{'d':>2} {'delta':>6} {'n':>7} {'n/37B':>8} {'CRA(d/2)':>9} {'+-se':>6} {'NN<=d':>7} "
           f"{'coverage':>8} {'uni.exact':>9} {'bound':>8}")
    if args.exact:
        hdr += f" {'l2NN LB':>8} {'l2NN EXACT':>10}"
    print(hdr)
    for r in rows:
        print(f"{r['d']:>2} {r['delta']:>6g} {r['n']:>7} {r['n_over_thm2']:>8.4f} "
              f"{r['certified_robust_accuracy']:>9.4f} {r['certified_robust_accuracy_stderr']:>6.4f} "
              f"{r['near_fraction']:>7.4f} {r['coverage']:>8.4f} {r['coverage_uniform_exact']:>9.4f} "
              f"{r['coverage_bound']:>8.4f}"
              + (f" {r['l2nn_certified_accuracy']:>8.4f} {r['l2nn_exact_robust_accuracy']:>10.4f}"
                 if args.exact else ""))
    if args.exact:
        print("(CRA(d/2): l-inf-metric 1-NN of Theorem 2, half-gap certificate, a lower bound; "
              "l2NN LB / EXACT: the l2-metric 1-NN on the same sets at l-inf radius delta/2, "
              "certified (l2 half gap / sqrt(d), a lower bound) and exact robust accuracy)")
    print()
    print(f"{'d':>2} {'delta':>6} {'|B|':>6} {'37|B|':>7} {'CRA@37|B|':>9} {'n99 CRA':>8} "
          f"{'x looser':>8} {'n99 cov':>8} {'n99 unif':>8} {'x looser':>8}")
    for s in summary:
        n99 = "-" if s["n99_cra_grid"] is None else str(s["n99_cra_grid"])
        loose = "-" if s["looseness_cra"] is None else f"{s['looseness_cra']:.0f}"
        print(f"{s['d']:>2} {s['delta']:>6g} {s['boxes']:>6} {s['n_thm2']:>7} {s['cra_at_n_thm2']:>9.4f} "
              f"{n99:>8} {loose:>8} {str(s['n99_coverage_grid'] or '-'):>8} "
              f"{s['n99_uniform_coverage_exact']:>8} "
              f"{s['looseness_uniform_coverage']:>8.1f}")
    print(f"(n99 CRA: smallest n of the halving grid from which the measured CRA stays >= "
          f"{THM2_TARGET_ROBUST_ACC}; resolution a factor 2; n99 cov: the same for the measured box coverage; n99 unif: exact, "
          f"coverage of the uniform special case. "
          f"Theorem 2 uses {THM2_SAMPLE_FACTOR}*ceil(1/delta)^d.)")

    if args.json:
        atomic_write_json(args.json, {
            "rows": rows, "summary": summary, "skipped": skipped,
            "settings": settings,
            "provenance": provenance(seed=args.seed, wall_seconds=time.perf_counter() - t0, device="cpu"),
        })
    if ckpt_path is not None:
        shutil.rmtree(ckpt_path, ignore_errors=True)     # finished: the rows are in the JSON
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
