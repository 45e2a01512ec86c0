"""Exact robust accuracy of l2-metric 1-NN on an image subset, beside its lower bounds and the
r-separation promise (YRZSC Section 3 and Theorem 4.2; P&L supplementary Section 8).

For a seeded random subset of --n-train training and --n-test test images (pixels in [0, 1]) the
exact robust radius of every test point under the l2-metric 1-NN classifier is computed
(``theory.nn_exact``: a QP per candidate region for l2 perturbations, an LP for l-inf), and per
radius eps the command prints

* clean accuracy of 1-NN on the subset;
* half-gap certified robust accuracy (``theory.nn_certificate``: (b - a)/2 in l2; for l-inf
  perturbations divided by sqrt(dim), since ||v||_2 <= sqrt(dim) ||v||_inf) -- a lower bound;
* bisector-bound certified robust accuracy (Wang et al. 2019, the pruning bound) -- a lower bound;
* EXACT robust accuracy (correct and exact radius > eps);
* the separation promise: r/2 of the training subset (r = smallest distance between training
  points of different labels, ``theory.separation``, same norm), and the fraction of test points
  whose nearest other-label training point is farther than 2 eps (the test points the
  separation argument covers at eps: a classifier that is correct and eps-robust on them and on
  the whole training subset exists).

    python -m simulate.nn_exact_robustness --dataset mnist --data-root ../shared/data/mnist
        [--n-train 2000] [--n-test 200] [--norm inf|2|both] [--eps 0.1,...] [--seed 0] [--json F]

Resumable: per batch of --batch queries the radii are checkpointed to <json>.ckpt (or
--checkpoint) and reused by a rerun with the same settings; the JSON is written atomically. Same
seed, same subset, same numbers.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from plumbing.cli import (OneLineArgumentParser, UsageError, add_force_arg, csv_list, float_range,
                           int_sci, run_main)
from plumbing.io import atomic_write_json, check_output_file, provenance
from plumbing.progress import progress
from plumbing.validation import check_choice, check_int, check_norm
from theory.constants import NN_EXACT_L2_RADII, YANG_EPS_LINF
from theory.nn_exact import exact_1nn, same_label_neighbours
from theory.separation import nearest_other_label

from .json_checkpoint import Checkpoint

RESUMABLE = ("interrupted; rerun the same command to resume from the last checkpoint (kept only with "
             "--json or --checkpoint)")
PROG = "python -m simulate.nn_exact_robustness"
DATASETS = ("mnist", "fashion-mnist")
DEFAULT_EPS = {"inf": [YANG_EPS_LINF["mnist"]], "2": list(NN_EXACT_L2_RADII)}


@dataclass
class Config:
    dataset: str = "mnist"
    data_root: str | None = None
    n_train: int = 2000
    n_test: int = 200
    norms: list = field(default_factory=lambda: ["inf", "2"])
    eps: dict = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_EPS.items()})
    seed: int = 0
    batch: int = 20
    json: str | None = None
    checkpoint: str | None = None

    def __post_init__(self):
        check_choice("dataset", self.dataset, DATASETS)
        self.n_train = check_int("n_train", self.n_train, min_value=2, max_value=60000)
        self.n_test = check_int("n_test", self.n_test, min_value=1, max_value=10000)
        self.seed = check_int("seed", self.seed, min_value=0)
        self.batch = check_int("batch", self.batch, min_value=1)
        self.norms = [check_norm("norm", v) for v in self.norms]
        if not self.norms or len(set(self.norms)) != len(self.norms):
            raise ValueError(f"norms must be a non-empty list without repeats, got {self.norms}")
        for k in self.norms:
            vals = self.eps.get(k)
            if not vals:
                raise ValueError(f"eps for norm {k} must be a non-empty list of radii >= 0")
            for v in vals:
                if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                    raise ValueError(f"eps for norm {k} must be finite radii >= 0, got {v!r}")
        for p in (self.json, self.checkpoint):
            if p is not None:
                _check_writable(Path(p))

    def settings(self) -> dict:
        d = asdict(self)
        for k in ("json", "checkpoint", "data_root", "eps"):
            d.pop(k)
        return d


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"output path {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UsageError(f"output folder {parent} is not writable")


def load_subset(cfg: Config):
    """Seeded random subsets (sorted indices) of the training and test split, pixels / 255."""
    from plumbing.datasets import load_dataset

    xtr, ytr = load_dataset(cfg.dataset, "train", cfg.data_root)
    xte, yte = load_dataset(cfg.dataset, "test", cfg.data_root)
    if cfg.n_train > len(xtr) or cfg.n_test > len(xte):
        raise ValueError(f"n_train must be <= {len(xtr)} and n_test <= {len(xte)} for {cfg.dataset}")
    rng = np.random.default_rng(cfg.seed)
    itr = np.sort(rng.choice(len(xtr), cfg.n_train, replace=False))
    ite = np.sort(rng.choice(len(xte), cfg.n_test, replace=False))
    return (xtr[itr].reshape(cfg.n_train, -1), ytr[itr], xte[ite].reshape(cfg.n_test, -1), yte[ite],
            itr, ite)


def run(cfg: Config) -> dict:
    """Exact radii for every test point and norm (checkpointed per batch), then the summary."""
    t0 = time.perf_counter()
    xtr8, ytr, xte8, yte, itr, ite = load_subset(cfg)
    if len(np.unique(ytr)) < 2:
        raise ValueError("the training subset has one class only; increase n_train")
    xtr, xte = xtr8 / 255.0, xte8 / 255.0
    dim = xtr.shape[1]
    ckpt_path = (Path(cfg.checkpoint) if cfg.checkpoint else
                 (Path(cfg.json + ".ckpt") if cfg.json else None))
    ckpt = Checkpoint(ckpt_path, cfg.settings())
    per_norm = {}
    neighbours = None
    for norm in cfg.norms:
        t_norm = time.perf_counter()
        fields = ("prediction", "radius", "lower_bound", "half_gap_l2", "n_solved", "n_candidates",
                  "target")
        cols = {f: [] for f in fields}
        solve_seconds = 0.0
        bar = progress(total=cfg.n_test, desc=f"exact 1-NN radius l{norm}")
        for b0 in range(0, cfg.n_test, cfg.batch):
            key = f"{norm}|{b0}"
            rec = ckpt.get(key)
            if rec is None:
                tb = time.perf_counter()
                if neighbours is None:
                    neighbours = same_label_neighbours(xtr, ytr)
                res = exact_1nn(xte[b0:b0 + cfg.batch], xtr, ytr, norm, neighbours=neighbours)
                rec = {f: getattr(res, f).tolist() for f in fields}
                rec["seconds"] = time.perf_counter() - tb
                ckpt.put(key, rec)
            for f in fields:
                cols[f].extend(rec[f])
            solve_seconds += rec["seconds"]
            bar.update(min(cfg.batch, cfg.n_test - b0))
        bar.close()
        # separation in the same norm, on the same subset (uint8: exact), in [0, 1] units
        tt, _ = nearest_other_label(xtr8, ytr, xtr8, ytr, norm, exclude_self=True)
        ts, _ = nearest_other_label(xte8, yte, xtr8, ytr, norm)
        r_sep = float(tt.min()) / 255.0
        ts = ts / 255.0
        pred = np.array(cols["prediction"])
        radius = np.array(cols["radius"], dtype=float)
        lower = np.array(cols["lower_bound"], dtype=float)
        hg = np.array(cols["half_gap_l2"], dtype=float)
        hg_norm = hg if norm == "2" else hg / math.sqrt(dim)
        correct = pred == yte
        rows = []
        for eps in cfg.eps[norm]:
            rows.append({
                "norm": norm, "eps": eps,
                "clean_accuracy": float(correct.mean()),
                "half_gap_certified_accuracy": float((correct & (hg_norm > eps)).mean()),
                "bisector_certified_accuracy": float((correct & (lower > eps)).mean()),
                "exact_robust_accuracy": float((correct & (radius > eps)).mean()),
                "separation_covered_fraction": float((ts > 2 * eps).mean()),
                "r_over_2": r_sep / 2, "r_over_2_exceeds_eps": bool(r_sep / 2 > eps),
            })
        per_norm[norm] = {
            "rows": rows,
            "r_train_train": r_sep,
            "test_train_separation": ts.tolist(),
            "radius": radius.tolist(), "lower_bound": lower.tolist(),
            "half_gap": hg_norm.tolist(), "correct": correct.tolist(),
            "n_solved": cols["n_solved"], "target_train_index": [int(itr[t]) if t >= 0 else -1
                                                                 for t in cols["target"]],
            "median_exact_over_half_gap": float(np.median(radius[hg_norm > 0] / hg_norm[hg_norm > 0])),
            "mean_candidates_solved": float(np.mean(cols["n_solved"])),
            "candidates_per_query": float(np.mean(cols["n_candidates"])),
            "solve_seconds": solve_seconds,
            "seconds_per_query": solve_seconds / cfg.n_test,
            "wall_seconds": time.perf_counter() - t_norm,
        }
    out = {
        "dataset": cfg.dataset, "n_train": cfg.n_train, "n_test": cfg.n_test, "dim": dim,
        "pixel_scale": "[0, 1] (uint8 / 255)", "classifier": "1-NN, l2 metric, lowest label on ties",
        "perturbations": "unconstrained (no [0, 1] box)",
        "train_indices": itr.tolist(), "test_indices": ite.tolist(),
        "norms": per_norm, "settings": cfg.settings(), "eps": cfg.eps,
        "provenance": provenance(seed=cfg.seed, wall_seconds=time.perf_counter() - t0, device="cpu"),
    }
    if cfg.json:
        atomic_write_json(cfg.json, out)
    ckpt.done()
    return out


def print_report(out: dict) -> None:
    print(f"{out['dataset']} subset: n_train={out['n_train']} n_test={out['n_test']} dim={out['dim']} "
          f"(1-NN, l2 metric; exact radius via QP (l2) / LP (l-inf))")
    for norm, blk in out["norms"].items():
        print(f"perturbation l{norm}: r (train-train separation) = {blk['r_train_train']:.4f}, "
              f"r/2 = {blk['r_train_train'] / 2:.4f}; median exact/half-gap radius "
              f"{blk['median_exact_over_half_gap']:.2f}; {blk['mean_candidates_solved']:.2f} of "
              f"{blk['candidates_per_query']:.0f} candidates solved per query; "
              f"{blk['seconds_per_query']:.3f} s/query ({blk['solve_seconds']:.1f} s total)")
        print(f"  {'eps':>7} {'clean':>6} {'half-gap LB':>11} {'bisector LB':>11} {'EXACT':>6} "
              f"{'sep-covered':>11}")
        for r in blk["rows"]:
            print(f"  {r['eps']:>7.4f} {r['clean_accuracy']:>6.3f} {r['half_gap_certified_accuracy']:>11.3f} "
                  f"{r['bisector_certified_accuracy']:>11.3f} {r['exact_robust_accuracy']:>6.3f} "
                  f"{r['separation_covered_fraction']:>11.3f}")
    print(f"total {out['provenance']['wall_seconds']:.1f} s (shared, loaded machine)")


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=DATASETS, default="mnist", help="image dataset")
    ap.add_argument("--data-root", default=None,
                    help="data folder (default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--n-train", type=int_sci(2, "--n-train"), default=2000,
                    help="training images (seeded subset)")
    ap.add_argument("--n-test", type=int_sci(1, "--n-test"), default=200,
                    help="test images (seeded subset)")
    ap.add_argument("--norm", choices=("inf", "2", "both"), default="both",
                    help="perturbation norm (default both)")
    ap.add_argument("--eps", type=csv_list(float_range(0.0, name="--eps"), "--eps"), default=None,
                    help="radii for the chosen --norm (pixels in [0, 1]); default l-inf "
                         f"{DEFAULT_EPS['inf']}, l2 {[round(e, 4) for e in DEFAULT_EPS['2']]}")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="seed, >= 0")
    ap.add_argument("--batch", type=int_sci(1, "--batch"), default=20, help="queries per checkpoint")
    ap.add_argument("--json", default=None, metavar="PATH",
                    help="write the results (with provenance) as JSON (default: not written)")
    ap.add_argument("--checkpoint", default=None, metavar="PATH",
                    help="checkpoint file (default <json>.ckpt; none without --json)")
    add_force_arg(ap)
    args = ap.parse_args(argv)
    check_output_file(args.json, "--json", force=args.force)
    check_output_file(args.checkpoint, "--checkpoint", existing="replace")
    norms = ["inf", "2"] if args.norm == "both" else [args.norm]
    eps = {k: list(v) for k, v in DEFAULT_EPS.items()}
    if args.eps is not None:
        if args.norm == "both":
            raise UsageError("--eps needs a single --norm (inf or 2)")
        eps[args.norm] = args.eps
    cfg = Config(dataset=args.dataset, data_root=args.data_root, n_train=args.n_train,
                 n_test=args.n_test, norms=norms, eps=eps, seed=args.seed, batch=args.batch,
                 json=args.json, checkpoint=args.checkpoint)
    out = run(cfg)
    print_report(out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
