"""The Staircase experiment (YRZSC Section 5 / Appendix A; Raghunathan et al. 2019): test MSE and
robust test MSE of natural training, AT, GR, LLR and TRADES against the training-set size.

Per size n in --n-grid and trial t < --trials a training set is drawn (seed derived from
(--seed, n, t)), every method is fitted (``theory.staircase``: natural exactly, AT and TRADES as
convex QPs, GR and LLR locally from the natural fit) and evaluated exactly over the population.
Means with 95% t-intervals over the trials (scipy.stats.t) are printed and written to --json as
{"rows": [{"method", "n", "test_mse", "test_mse_ci95", "robust_test_mse",
"robust_test_mse_ci95", ...}], "fits": ..., "spec": ..., "provenance": ...}.

    python -m simulate.staircase [--n-grid 20,40,80,160,320,640] [--trials 10] [--seed 0]
                                 [--json results/staircase.json]

Resumable: every (n, trial) is checkpointed to <json>.ckpt (or --checkpoint); same seed, same
numbers.
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from plumbing.cli import OneLineArgumentParser, UsageError, add_force_arg, csv_list, int_sci, run_main
from plumbing.io import atomic_write_json, check_output_file, provenance
from plumbing.progress import progress
from plumbing.validation import check_int
from theory.staircase import METHODS, StaircaseSpec, evaluate, fit, objective

from .json_checkpoint import Checkpoint
from .nn_covering import row_seed

RESUMABLE = ("interrupted; rerun the same command to resume from the last checkpoint (kept only with "
             "--json or --checkpoint)")
PROG = "python -m simulate.staircase"
MAX_N = 20000


@dataclass
class Config:
    n_grid: list = field(default_factory=lambda: [20, 40, 80, 160, 320, 640])
    trials: int = 10
    seed: int = 0
    json: str | None = None
    checkpoint: str | None = None
    force: bool = False           # discard a checkpoint written with other settings

    def __post_init__(self):
        if not self.n_grid:
            raise ValueError("n_grid must be a non-empty list of sizes")
        self.n_grid = sorted({check_int("n_grid", n, min_value=2, max_value=MAX_N) for n in self.n_grid})
        self.trials = check_int("trials", self.trials, min_value=2, max_value=10000)
        self.seed = check_int("seed", self.seed, min_value=0)
        for p in (self.json, self.checkpoint):
            if p is not None and Path(p).is_dir():
                raise UsageError(f"output path {p} is a directory; give a file name")
            if p is not None:
                probe = Path(p).parent
                while not probe.exists():
                    probe = probe.parent
                if not os.access(probe, os.W_OK):
                    raise UsageError(f"output folder {Path(p).parent} is not writable")


ROW_KEYS = ("test_mse", "robust_test_mse", "seconds", "theta")


def check_row(rec, key: str, path) -> None:
    """A checkpointed (n, trial) row must hold the sample and every method's numbers; an
    incomplete one (hand-edited, or from another version) is named, never a KeyError."""
    from plumbing.io import CorruptFileError

    missing = [] if isinstance(rec, dict) else ["everything"]
    if not missing:
        missing = [k for k in ("x", "y") if k not in rec]
        for m in METHODS:
            if not isinstance(rec.get(m), dict):
                missing.append(m)
            else:
                missing += [f"{m}.{k}" for k in ROW_KEYS if k not in rec[m]]
    if missing:
        raise CorruptFileError(f"checkpoint {path}: row {key} lacks {', '.join(missing[:6])}; "
                               f"delete it to recompute its rows")


def ci95(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


def run(cfg: Config) -> dict:
    spec = StaircaseSpec()
    t0 = time.perf_counter()
    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else (Path(cfg.json + ".ckpt") if cfg.json else None)
    settings = {"n_grid": cfg.n_grid, "trials": cfg.trials, "seed": cfg.seed, "spec": asdict(spec)}
    ckpt = Checkpoint(ckpt_path, settings, force=cfg.force)
    grid = np.linspace(*spec.domain(), 400)
    fits = {}
    per = {}
    jobs = [(n, t) for n in cfg.n_grid for t in range(cfg.trials)]
    for n, t in progress(jobs, desc="staircase"):
        key = f"{n}|{t}"
        rec = ckpt.get(key)
        if rec is not None:
            check_row(rec, key, ckpt_path)
        if rec is None:
            rng = np.random.default_rng(row_seed(cfg.seed, n, t))
            x, y = spec.sample(n, rng)
            rec = {"x": x.tolist(), "y": y.tolist()}
            for m in METHODS:
                ts = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    theta = fit(m, x, y, spec)
                ev = evaluate(theta, spec)
                rec[m] = {**ev, "train_objective": objective(m, theta, x, y, spec),
                          "seconds": time.perf_counter() - ts, "theta": theta.tolist()}
            ckpt.put(key, rec)
        per[(n, t)] = rec
    rows = []
    for n in cfg.n_grid:
        for m in METHODS:
            recs = [per[(n, t)][m] for t in range(cfg.trials)]
            mse, mse_ci = ci95([r["test_mse"] for r in recs])
            rob, rob_ci = ci95([r["robust_test_mse"] for r in recs])
            rows.append({"method": m, "n": n, "test_mse": mse, "test_mse_ci95": mse_ci,
                         "robust_test_mse": rob, "robust_test_mse_ci95": rob_ci, "trials": cfg.trials,
                         "seconds_mean": float(np.mean([r["seconds"] for r in recs]))})
    for n in (cfg.n_grid[0], cfg.n_grid[-1]):
        rec = per[(n, 0)]
        B = spec.basis(grid)
        fits[str(n)] = {"x": rec["x"], "y": rec["y"],
                        **{m: (B @ np.asarray(rec[m]["theta"])).tolist() for m in METHODS}}
    out = {
        "rows": rows, "methods": list(METHODS),
        "fits": {"grid": grid.tolist(), "by_n": fits, "trial": 0},
        "spec": asdict(spec),
        "evaluation": "exact population expectation over the 3*n_stairs support points "
                      "(test MSE includes the label-noise variance)",
        "solvers": {"natural": "least squares (exact)", "at": "convex QP, trust-constr, gtol 1e-8",
                    "trades": "convex QP, trust-constr, gtol 1e-8",
                    "gr": "non-convex: local BFGS from the natural fit, gtol 1e-8",
                    "llr": "non-convex, non-smooth: local BFGS from the natural fit, gtol 1e-8"},
        "settings": settings,
        "provenance": provenance(seed=cfg.seed, wall_seconds=time.perf_counter() - t0, device="cpu"),
    }
    if cfg.json:
        atomic_write_json(cfg.json, out)
    ckpt.done()
    return out


def print_report(out: dict) -> None:
    print(f"Staircase: test MSE / robust test MSE (eps = {out['spec']['eps']:.4f}), mean +- 95% CI "
          f"over {out['rows'][0]['trials']} trials; lambda = {out['spec']['lam']}")
    print(f"{'n':>6} " + " ".join(f"{m:>22}" for m in out["methods"]))
    for key, label in (("test_mse", "test MSE"), ("robust_test_mse", "robust test MSE")):
        print(f"-- {label}")
        for n in sorted({r["n"] for r in out["rows"]}):
            cells = []
            for m in out["methods"]:
                r = next(r for r in out["rows"] if r["n"] == n and r["method"] == m)
                cells.append(f"{r[key]:>10.4f} +- {r[key + '_ci95']:<8.4f}")
            print(f"{n:>6} " + " ".join(f"{c:>22}" for c in cells))
    print(f"total {out['provenance']['wall_seconds']:.1f} s (shared, loaded machine)")


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-grid", type=csv_list(int_sci(2, "--n-grid"), "--n-grid"),
                    default=[20, 40, 80, 160, 320, 640], help=f"training-set sizes (2..{MAX_N})")
    ap.add_argument("--trials", type=int_sci(2, "--trials"), default=10,
                    help="training sets per size, >= 2")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="seed, >= 0")
    ap.add_argument("--json", default=None, metavar="PATH",
                    help="write the results (with provenance) as JSON (default: not written)")
    ap.add_argument("--checkpoint", default=None, metavar="PATH",
                    help="checkpoint file (default <json>.ckpt; none without --json)")
    add_force_arg(ap)
    args = ap.parse_args(argv)
    check_output_file(args.json, "--json", force=args.force)
    check_output_file(args.checkpoint, "--checkpoint", existing="replace")
    if max(args.n_grid) > MAX_N:
        raise UsageError(f"--n-grid sizes must be <= {MAX_N}, got {max(args.n_grid)}")
    cfg = Config(n_grid=args.n_grid, trials=args.trials, seed=args.seed, json=args.json,
                 checkpoint=args.checkpoint, force=args.force)
    out = run(cfg)
    print_report(out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
