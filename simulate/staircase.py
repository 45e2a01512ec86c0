"""The Staircase experiment (YRZSC Section 5 / Appendix A; Raghunathan et al. 2019): test MSE and
robust test MSE of natural training, AT, GR, LLR and TRADES against the training-set size.

Per size n in --n-grid and trial t < --trials a training set is drawn (seed derived from
(--seed, n, t)), every method is fitted (``theory.staircase``: natural exactly, AT and TRADES as
convex QPs, GR and LLR locally from the natural fit) and evaluated exactly over the population.

Statistics. The per-trial MSEs are strongly skewed at small n (one bad AT fit among ten), so the
summary is the median over the trials with a distribution-free confidence interval from order
statistics [x_(k), x_(n+1-k)] (``median_interval``; k the largest with coverage >= 95%: for 10
trials [x_(2), x_(9)], exact coverage 97.9%). Its ends are observed trial values, so it never
leaves the range of the data (never below 0 or the label-noise floor sigma^2 of the test MSE) and
always contains the median; the mean is also recorded. Printed and written to --json as
{"rows": [{"method", "n", "test_mse_median", "test_mse_interval": [lo, hi], "test_mse_mean",
"test_mse_trials", the same for robust_test_mse, "interval_coverage", ...}], "fits", "spec",
"lam_sweep", "provenance"}.

--lam-sweep L1,L2,...: natural and AT refitted with penalty lambda = L1, L2, ... on the same
training sets at the smallest n (the small-n AT result depends strongly on lambda; the YRZSC
authors' notebook uses 0.01, YRZSC Appendix A states 0.1), in "lam_sweep".

    python -m simulate.staircase [--n-grid 20,40,80,160,320,640] [--trials 10] [--seed 0]
                                 [--lam-sweep 0.001,0.01,0.1] [--json results/staircase.json]

Resumable: every (n, trial) is checkpointed to <json>.ckpt (or --checkpoint); same seed, same
numbers.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import stats

from plumbing.cli import (OneLineArgumentParser, UsageError, add_force_arg, csv_list, float_range,
                          int_sci, run_main)
from plumbing.io import atomic_write_json, check_output_file, provenance
from plumbing.progress import progress
from plumbing.validation import check_float, check_int
from theory.staircase import METHODS, StaircaseSpec, evaluate, fit, objective

from .json_checkpoint import Checkpoint
from .nn_covering import row_seed

RESUMABLE = ("interrupted; rerun the same command to resume from the last checkpoint (kept only with "
             "--json or --checkpoint)")
PROG = "python -m simulate.staircase"
MAX_N = 20000
SWEEP_METHODS = ("natural", "at")


@dataclass
class Config:
    n_grid: list = field(default_factory=lambda: [20, 40, 80, 160, 320, 640])
    trials: int = 10
    seed: int = 0
    json: str | None = None
    checkpoint: str | None = None
    lam_sweep: list = field(default_factory=list)
    force: bool = False           # discard a checkpoint written with other settings

    def __post_init__(self):
        if not self.n_grid:
            raise ValueError("n_grid must be a non-empty list of sizes")
        self.n_grid = sorted({check_int("n_grid", n, min_value=2, max_value=MAX_N) for n in self.n_grid})
        self.trials = check_int("trials", self.trials, min_value=2, max_value=10000)
        self.seed = check_int("seed", self.seed, min_value=0)
        self.lam_sweep = sorted({check_float("lam_sweep", lam, low=0.0) for lam in self.lam_sweep})
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



def median_interval(values, confidence: float = 0.95) -> dict:
    """Median of the trial values with the distribution-free order-statistic interval
    [x_(k), x_(n+1-k)] for the population median: P(x_(k) <= median <= x_(n+1-k)) =
    1 - 2 P(Binomial(n, 1/2) <= k - 1) for continuous data, k the largest value with coverage
    >= ``confidence`` (k = 1, the sample range, when even that falls short, n < 6 at 95%: the
    achieved coverage is returned). The ends are observed values, so the interval lies within
    the data's range and contains the sample median. Returns median, interval [lo, hi],
    coverage, mean."""
    v = np.sort(np.asarray(values, dtype=float).ravel())
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be a non-empty array of finite numbers, got {v.size} values")
    check_float("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    n = v.size

    def cover(k):
        return 1.0 - 2.0 * float(stats.binom.cdf(k - 1, n, 0.5))

    k = 1
    while k + 1 <= (n + 1) // 2 and cover(k + 1) >= confidence:
        k += 1
    return {"median": float(np.median(v)), "interval": [float(v[k - 1]), float(v[n - k])],
            "coverage": cover(k), "mean": float(v.mean())}


def _summary_row(recs, **extra) -> dict:
    row = dict(extra)
    for key in ("test_mse", "robust_test_mse"):
        vals = [r[key] for r in recs]
        st = median_interval(vals)
        row.update({f"{key}_median": st["median"], f"{key}_interval": st["interval"],
                    f"{key}_mean": st["mean"], f"{key}_trials": vals})
        row["interval_coverage"] = st["coverage"]
    return row


def run(cfg: Config) -> dict:
    spec = StaircaseSpec()
    t0 = time.perf_counter()
    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else (Path(cfg.json + ".ckpt") if cfg.json else None)
    settings = {"n_grid": cfg.n_grid, "trials": cfg.trials, "seed": cfg.seed, "spec": asdict(spec),
                "lam_sweep": cfg.lam_sweep}
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
    sweep_rows = []
    n_sw = cfg.n_grid[0]
    sweep_jobs = [(lam, t) for lam in cfg.lam_sweep for t in range(cfg.trials)]
    for lam, t in (progress(sweep_jobs, desc="lambda sweep") if sweep_jobs else ()):
        key = f"lam={lam!r}|{n_sw}|{t}"
        if ckpt.get(key) is None:
            spec_l = replace(spec, lam=lam)
            rec0 = per[(n_sw, t)]                      # the same training set as the main run
            x, y = np.asarray(rec0["x"]), np.asarray(rec0["y"])
            rec = {}
            for m in SWEEP_METHODS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    theta = fit(m, x, y, spec_l)
                rec[m] = evaluate(theta, spec_l)
            ckpt.put(key, rec)
    for lam in cfg.lam_sweep:
        for m in SWEEP_METHODS:
            recs = [ckpt.get(f"lam={lam!r}|{n_sw}|{t}")[m] for t in range(cfg.trials)]
            sweep_rows.append(_summary_row(recs, method=m, n=n_sw, lam=lam, trials=cfg.trials))
    rows = []
    for n in cfg.n_grid:
        for m in METHODS:
            recs = [per[(n, t)][m] for t in range(cfg.trials)]
            rows.append(_summary_row(recs, method=m, n=n, trials=cfg.trials,
                                     seconds_mean=float(np.mean([r["seconds"] for r in recs]))))
    for n in (cfg.n_grid[0], cfg.n_grid[-1]):
        rec = per[(n, 0)]
        B = spec.basis(grid)
        fits[str(n)] = {"x": rec["x"], "y": rec["y"],
                        **{m: (B @ np.asarray(rec[m]["theta"])).tolist() for m in METHODS}}
    out = {
        "rows": rows, "methods": list(METHODS),
        "statistic": "median over the trials; interval: distribution-free order-statistic "
                     "confidence interval for the median (coverage in interval_coverage); "
                     "mean and per-trial values also given",
        "lam_sweep": {"n": n_sw, "methods": list(SWEEP_METHODS), "rows": sweep_rows},
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


def _cell(r, key) -> str:
    lo, hi = r[key + "_interval"]
    return f"{r[key + '_median']:.4f} [{lo:.4f}, {hi:.4f}]"


def print_report(out: dict) -> None:
    r0 = out["rows"][0]
    print(f"Staircase: test MSE / robust test MSE (eps = {out['spec']['eps']:.4f}), median "
          f"[order-statistic interval, coverage {100 * r0['interval_coverage']:.1f}%] over "
          f"{r0['trials']} trials; lambda = {out['spec']['lam']}")
    print(f"{'n':>6} " + " ".join(f"{m:>26}" for m in out["methods"]))
    for key, label in (("test_mse", "test MSE"), ("robust_test_mse", "robust test MSE")):
        print(f"-- {label}")
        for n in sorted({r["n"] for r in out["rows"]}):
            cells = [_cell(next(r for r in out["rows"] if r["n"] == n and r["method"] == m), key)
                     for m in out["methods"]]
            print(f"{n:>6} " + " ".join(f"{c:>26}" for c in cells))
    sw = out["lam_sweep"]
    if sw["rows"]:
        print(f"-- lambda sweep at n = {sw['n']} (same training sets): test MSE median [interval]; "
              f"mean")
        for r in sw["rows"]:
            print(f"  lambda {r['lam']:<8g} {r['method']:>8}  {_cell(r, 'test_mse')}; "
                  f"mean {r['test_mse_mean']:.4f}; robust {_cell(r, 'robust_test_mse')}")
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
    ap.add_argument("--lam-sweep", type=csv_list(float_range(0.0, name="--lam-sweep"), "--lam-sweep"),
                    default=[], metavar="L1,L2,...",
                    help="also refit natural and AT with these penalties lambda >= 0 at the smallest n")
    add_force_arg(ap)
    args = ap.parse_args(argv)
    check_output_file(args.json, "--json", force=args.force)
    check_output_file(args.checkpoint, "--checkpoint", existing="replace")
    if max(args.n_grid) > MAX_N:
        raise UsageError(f"--n-grid sizes must be <= {MAX_N}, got {max(args.n_grid)}")
    cfg = Config(n_grid=args.n_grid, trials=args.trials, seed=args.seed, json=args.json,
                 checkpoint=args.checkpoint, lam_sweep=args.lam_sweep, force=args.force)
    out = run(cfg)
    print_report(out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
