"""Exact robust accuracy of the l2-metric 1-NN classifier on a whole image data set, beside its
lower bounds and the r-separation promise (YRZSC Section 3 and Theorem 4.2; P&L Theorem 2 and
supplementary Section 8).

For every test image (default: the FULL test set against the FULL training set; pixels in [0, 1])
the exact robust radius of the 1-NN classifier (``theory.nn_exact``: a QP per candidate region for
l2 perturbations, an LP for l-inf) is computed, in the box threat model (the perturbed image stays
in [0, 1], the default) or without it (--no-box). Robust means: every perturbation within eps
keeps the prediction as the unique nearest label (a tie counts as an attack). Per eps (a grid and
the papers' radii) the JSON records

* clean accuracy of 1-NN;
* half-gap certified robust accuracy ((b - a)/2 in l2; for l-inf divided by sqrt(dim), since
  ||v||_2 <= sqrt(dim) ||v||_inf) -- a lower bound (also valid in the box);
* single-bisector certified robust accuracy (Wang et al. 2019) -- a lower bound;
* EXACT robust accuracy (correct and exact radius > eps) in the chosen threat model;
* the separation promise (YRZSC Theorem 4.2): r/2 of the training set in the same norm
  (r = smallest distance between training points of different labels) -- a classifier robust at
  every eps < r/2 on the whole training set exists -- and the fraction of test points whose
  nearest other-label training point is farther than 2 eps.

    python -m simulate.nn_exact_robustness --dataset mnist [--data-root ../shared/data/mnist]
        [--norm inf|2|both] [--box | --no-box] [--n-train N --n-test M (reduced, seeded)]
        [--out results/nn_exact] [--force] [--engine ray [--workers N] [--address ADDR]]

Writes <out>/<dataset>_<inf|l2>_<box|nobox>[_reduced].json and a .npz beside it (per test point:
prediction, label, radius, index of the training point whose region the minimal perturbation
reaches, lower bounds, status). Resumable: per chunk of test points the radii are checkpointed to
<json>.ckpt and reused by a rerun with the same settings; files are written atomically.
With ``--engine ray`` the chunks are Ray tasks (``plumbing.sweep``; the prepared training set goes
to the object store once) and give the same numbers as the local engine; on a machine with k cores
``--workers k`` solves k chunks at once.
"""
from __future__ import annotations

import io
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from plumbing.cli import (OneLineArgumentParser, UsageError, add_force_arg, csv_list, float_range,
                           int_sci, run_main)
from plumbing.io import atomic_write_bytes, atomic_write_json, check_output_dir, provenance
from plumbing.progress import progress
from plumbing.sweep import ENGINES, add_engine_args, check_engine_args, run_sweep
from plumbing.validation import check_choice, check_int, check_norm
from theory.constants import EPS_L2_DEFAULT, MNIST_L2_EPS_LARGE, YANG_EPS_LINF
from theory.nn_exact import MISCLASSIFIED, ONE_LABEL, SOLVED, TIE_AT_QUERY, build_index

from .json_checkpoint import Checkpoint
from .sweeps import NN_EXACT, NN_EXACT_FIELDS, NnExactShard, nn_exact_chunk

PROG = "python -m simulate.nn_exact_robustness"
DATASETS = ("mnist", "fashion-mnist", "cifar10")
# radii named in the papers, per dataset and norm (pixels in [0, 1]): YRZSC Table 1/2 l-inf radii
# (MNIST 0.1; CIFAR-10 0.031 = 8/255), the MNIST l-inf 0.3 of the adversarial-training literature
# the papers compare with, P&L's default l2 radius 36/255 (Section 2) and the MNIST l2 1.58.
PAPER_EPS = {
    "mnist": {"inf": [YANG_EPS_LINF["mnist"], 0.3], "2": [EPS_L2_DEFAULT, MNIST_L2_EPS_LARGE]},
    "fashion-mnist": {"inf": [0.1], "2": [EPS_L2_DEFAULT, MNIST_L2_EPS_LARGE]},
    "cifar10": {"inf": [2 / 255, YANG_EPS_LINF["cifar10"]], "2": [EPS_L2_DEFAULT, 0.5]},
}
GRID = {"inf": [round(0.01 * k, 2) for k in range(0, 41)],
        "2": [round(0.05 * k, 2) for k in range(0, 61)]}
STATUS_NAMES = {SOLVED: "solved", TIE_AT_QUERY: "tie at the query", MISCLASSIFIED: "misclassified",
                ONE_LABEL: "one label"}


@dataclass
class Config:
    dataset: str = "mnist"
    data_root: str | None = None
    n_train: int | None = None          # None: the full training set
    n_test: int | None = None           # None: the full test set
    first_test: int | None = None       # the first K test points (a prefix of the full run)
    norms: list = field(default_factory=lambda: ["inf", "2"])
    box: bool = True
    seed: int = 0
    chunk: int = 256
    out: str = "results/nn_exact"
    force: bool = False
    engine: str = "local"               # "ray": chunks as Ray tasks (plumbing.sweep); same numbers
    address: str | None = None
    workers: int | None = None

    def __post_init__(self):
        check_choice("dataset", self.dataset, DATASETS)
        if self.n_train is not None:
            self.n_train = check_int("n_train", self.n_train, min_value=2)
        if self.n_test is not None:
            self.n_test = check_int("n_test", self.n_test, min_value=1)
        if self.first_test is not None:
            self.first_test = check_int("first_test", self.first_test, min_value=1)
            if self.n_test is not None:
                raise ValueError("first_test and n_test exclude each other")
        self.seed = check_int("seed", self.seed, min_value=0)
        self.chunk = check_int("chunk", self.chunk, min_value=1, max_value=4096)
        self.norms = [check_norm("norm", v) for v in self.norms]
        check_choice("engine", self.engine, ENGINES)
        if self.workers is not None:
            self.workers = check_int("workers", self.workers, min_value=1)
        if self.engine == "local" and (self.address is not None or self.workers is not None):
            raise ValueError("address and workers need engine='ray'")
        if not self.norms or len(set(self.norms)) != len(self.norms):
            raise ValueError(f"norms must be a non-empty list without repeats, got {self.norms}")

    @property
    def reduced(self) -> bool:
        return self.n_train is not None or self.n_test is not None or self.first_test is not None

    def stem(self, norm: str) -> str:
        tail = (f"_first{self.first_test}" if self.first_test is not None and self.n_train is None
                else "_reduced" if self.reduced else "")
        return f"{self.dataset}_{'l2' if norm == '2' else 'inf'}_{'box' if self.box else 'nobox'}{tail}"

    def paths(self, norm: str) -> tuple[Path, Path, Path]:
        base = Path(self.out) / self.stem(norm)
        # a first-K run reads (and keeps) the checkpoint of the run over the whole test set
        full = Path(self.out) / replace(self, first_test=None).stem(norm)
        return base.with_suffix(".json"), base.with_suffix(".npz"), Path(str(full) + ".json.ckpt")

    def settings(self, norm: str) -> dict:
        d = asdict(self)
        for k in ("data_root", "out", "force", "norms", "chunk", "first_test", "engine", "address",
                  "workers"):
            d.pop(k)    # a first-K run reuses the chunks of the full run's checkpoint (a chunk
        # stored under its first index is reused only when its length matches, see _radii)
        d["norm"] = norm
        return d


def check_outputs(cfg: Config) -> None:
    """Before any long work: the output folder is usable and no finished result is replaced."""
    check_output_dir(cfg.out, "--out")
    for norm in cfg.norms:
        js, npz, _ = cfg.paths(norm)
        for p in (js, npz):
            if p.exists() and not cfg.force:
                raise UsageError(f"{p} already exists; pass --force to replace it")


def load(cfg: Config):
    """(train images, train labels, test images, test labels, train idx, test idx, fidelity);
    the full sets unless n_train / n_test ask for a seeded subset."""
    from plumbing.datasets import load_splits_with_fidelity

    xtr, ytr, xte, yte, fid = load_splits_with_fidelity(cfg.dataset, cfg.data_root)
    if (cfg.n_train or 0) > len(xtr) or (cfg.n_test or 0) > len(xte):
        raise UsageError(f"--n-train must be <= {len(xtr)} and --n-test <= {len(xte)} for {cfg.dataset}")
    rng = np.random.default_rng(cfg.seed)
    itr = np.arange(len(xtr)) if cfg.n_train is None else np.sort(rng.choice(len(xtr), cfg.n_train, replace=False))
    ite = np.arange(len(xte)) if cfg.n_test is None else np.sort(rng.choice(len(xte), cfg.n_test, replace=False))
    if cfg.first_test is not None:
        ite = ite[:cfg.first_test]
    xtr = np.asarray(xtr)[itr].reshape(len(itr), -1)
    xte = np.asarray(xte)[ite].reshape(len(ite), -1)
    if xtr.dtype != np.uint8 or xte.dtype != np.uint8:
        raise UsageError(f"{cfg.dataset}: expected uint8 images, got {xtr.dtype} / {xte.dtype}")
    return xtr, np.asarray(ytr)[itr].astype(np.int64), xte, np.asarray(yte)[ite].astype(np.int64), itr, ite, fid


def _radii(cfg, norm, xtr, ytr, xte, yte, ckpt):
    """Per-point exact radii, chunk by chunk (each chunk checkpointed as soon as it is done), on
    this process (``engine="local"``) or as Ray tasks sharing one prepared index (``"ray"``: the
    same chunks, the same numbers). Returns (columns, solving seconds summed over chunks, timing
    of this invocation)."""
    box = (0.0, 1.0) if cfg.box else None
    n = len(xte)
    starts = list(range(0, n, cfg.chunk))

    def stored(c0):
        rec = ckpt.get(str(c0))
        if rec is not None and len(rec.get("radius", ())) != min(cfg.chunk, n - c0):
            return None            # written with another --chunk: the key names another range
        return rec

    todo = [c0 for c0 in starts if stored(c0) is None]
    timing = {"index_seconds": 0.0, "solve_wall_seconds": 0.0, "chunks_computed": len(todo),
              "chunks_reused": len(starts) - len(todo)}
    if todo:
        tw = time.perf_counter()
        index = build_index(xtr / 255.0, ytr, norm, box)
        timing["index_seconds"] = time.perf_counter() - tw
        desc = f"{cfg.dataset} exact 1-NN radius l{norm}{' box' if cfg.box else ''}"
        if cfg.engine == "local":
            bar = progress(total=n, initial=n - sum(min(cfg.chunk, n - c0) for c0 in todo),
                           desc=desc)
            for c0 in todo:
                stop = min(c0 + cfg.chunk, n)
                ckpt.put(str(c0), nn_exact_chunk(index, xte, yte, c0, stop, norm))
                bar.update(stop - c0)
            bar.close()
        else:
            shards = [NnExactShard(c0, min(c0 + cfg.chunk, n), norm, cfg.box) for c0 in todo]
            run_sweep(NN_EXACT, shards, engine=cfg.engine, address=cfg.address,
                      workers=cfg.workers, shared={"index": index, "test_x": xte, "test_y": yte},
                      desc=desc + f" ({len(shards)} chunks on Ray)",
                      on_result=lambda i, c, rec: ckpt.put(str(c.start), rec))
        timing["solve_wall_seconds"] = time.perf_counter() - tw
    cols = {f: [] for f in NN_EXACT_FIELDS}
    seconds = 0.0
    for c0 in starts:
        rec = stored(c0)
        for f in NN_EXACT_FIELDS:
            cols[f].extend(rec[f])
        seconds += rec["seconds"]
    return {f: np.asarray(v) for f, v in cols.items()}, seconds, timing


def summarise(cfg, norm, cols, yte, r_sep, ts, dim) -> dict:
    """Robust accuracies on the eps grid and at the papers' radii."""
    pred = cols["prediction"].astype(np.int64)
    radius = cols["radius"].astype(float)
    lower = cols["lower_bound"].astype(float)
    hg = cols["half_gap_l2"].astype(float)
    hg_norm = hg if norm == "2" else hg / math.sqrt(dim)
    correct = pred == yte

    def row(eps):
        return {"eps": eps,
                "clean_accuracy": float(correct.mean()),
                "half_gap_certified_accuracy": float((correct & (hg_norm > eps)).mean()),
                "bisector_certified_accuracy": float((correct & (lower > eps)).mean()),
                "exact_robust_accuracy": float((correct & (radius > eps)).mean()),
                "separation_covered_fraction": float((ts > 2 * eps).mean()),
                "separation_promise_holds": bool(r_sep / 2 > eps)}

    return {"grid": [row(e) for e in GRID[norm]],
            "paper_radii": [row(e) for e in PAPER_EPS[cfg.dataset][norm]],
            "median_radius_correct": float(np.median(radius[correct])) if correct.any() else None,
            "median_exact_over_half_gap": float(np.median(radius[correct & (hg_norm > 0)]
                                                          / hg_norm[correct & (hg_norm > 0)]))
            if (correct & (hg_norm > 0)).any() else None}


def run(cfg: Config) -> dict:
    """Exact radii of every test point for every norm, then the summaries (one JSON + .npz per
    norm)."""
    from theory.separation import nearest_other_label

    t0 = time.perf_counter()
    xtr, ytr, xte, yte, itr, ite, fid = load(cfg)
    if len(np.unique(ytr)) < 2:
        raise UsageError("the training set has one class only")
    dim = xtr.shape[1]
    out = {}
    for norm in cfg.norms:
        t_norm = time.perf_counter()
        js, npz, ck = cfg.paths(norm)
        ckpt = Checkpoint(ck, cfg.settings(norm), force=cfg.force)
        cols, solve_seconds, timing = _radii(cfg, norm, xtr, ytr, xte, yte, ckpt)
        # separation in the same norm (uint8: exact), in [0, 1] units
        t_sep = time.perf_counter()
        tt, tt_idx = nearest_other_label(xtr, ytr, xtr, ytr, norm, exclude_self=True)
        ts, _ = nearest_other_label(xte, yte, xtr, ytr, norm)
        r_sep = float(tt.min()) / 255.0
        ts = ts / 255.0
        sep_seconds = time.perf_counter() - t_sep
        summ = summarise(cfg, norm, cols, yte, r_sep, ts, dim)
        status = cols["status"].astype(int)
        target = cols["target"].astype(np.int64)
        target_orig = np.where(target >= 0, itr[np.maximum(target, 0)], -1)
        res = {
            "dataset": cfg.dataset, "norm": norm,
            "threat_model": (f"l{norm} ball intersected with the pixel box [0, 1]" if cfg.box
                             else f"l{norm} ball, unconstrained (no pixel box)"),
            "box": [0.0, 1.0] if cfg.box else None,
            "n_train": int(len(xtr)), "n_test": int(len(xte)), "dim": dim,
            "reduced": cfg.reduced,
            "reduced_note": (None if not cfg.reduced else
                             f"the first {cfg.first_test} test points only, not the full test set"
                             if cfg.first_test is not None and cfg.n_train is None and cfg.n_test is None
                             else "seeded random subset (n_train/n_test), not the full data set"),
            "pixel_scale": "[0, 1] (uint8 / 255)",
            "classifier": "1-NN, l2 metric, lowest label on exact ties",
            "robustness_rule": "robust at eps iff correct and exact radius > eps (a tie within eps "
                               "counts as an attack)",
            "clean_accuracy": float((cols["prediction"] == yte).mean()),
            "paper_radii": summ["paper_radii"], "grid": summ["grid"],
            "r_train_train": r_sep, "r_over_2": r_sep / 2,
            "r_pair": [int(itr[int(np.argmin(tt))]), int(itr[int(tt_idx[int(np.argmin(tt))])])],
            "median_radius_correct": summ["median_radius_correct"],
            "median_exact_over_half_gap": summ["median_exact_over_half_gap"],
            "status_counts": {STATUS_NAMES[k]: int((status == k).sum()) for k in STATUS_NAMES},
            "mean_candidates_solved": float(cols["n_solved"][status == SOLVED].mean())
            if (status == SOLVED).any() else 0.0,
            "solve_seconds": solve_seconds, "seconds_per_test_point": solve_seconds / len(xte),
            "engine": cfg.engine, "workers": cfg.workers, **timing,
            "separation_seconds": sep_seconds,
            "wall_seconds": time.perf_counter() - t_norm,
            "per_point_file": npz.name,
            **fid.as_json(),
            "provenance": provenance(seed=cfg.seed, wall_seconds=time.perf_counter() - t0,
                                     device="cpu"),
            "settings": cfg.settings(norm),
        }
        buf = io.BytesIO()
        np.savez_compressed(buf, test_index=ite, label=yte, prediction=cols["prediction"],
                            radius=cols["radius"], target_train_index=target_orig,
                            bisector_lower_bound=cols["lower_bound"],
                            half_gap_l2=cols["half_gap_l2"], n_solved=cols["n_solved"],
                            status=status, test_train_separation=ts)
        atomic_write_bytes(npz, buf.getvalue())
        atomic_write_json(js, res)
        if cfg.first_test is None:
            ckpt.done()
        out[norm] = res
    return out


def print_report(out: dict) -> None:
    for norm, r in out.items():
        print(f"{r['dataset']} n_train={r['n_train']} n_test={r['n_test']}"
              f"{' (REDUCED: ' + r['reduced_note'] + ')' if r['reduced'] else ''}; threat model: "
              f"{r['threat_model']}")
        print(f"  {r['data_fidelity']['dataset'] if 'data_fidelity' in r else ''} approximate="
              f"{r['approximate']} checksum_match={r['checksum_match']}")
        print(f"  r/2 (train-train separation / 2, l{norm}) = {r['r_over_2']:.4f}; clean accuracy "
              f"{r['clean_accuracy']:.4f}; {r['mean_candidates_solved']:.2f} regions solved per "
              f"point; {r['seconds_per_test_point']:.4f} s per test point ({r['solve_seconds']:.1f} s "
              f"summed over chunks; {r['solve_wall_seconds']:.1f} s wall on engine {r['engine']}"
              f"{'' if r['workers'] is None else ' with ' + str(r['workers']) + ' workers'})")
        print(f"  {'eps':>7} {'clean':>6} {'half-gap LB':>11} {'bisector LB':>11} {'EXACT':>6} "
              f"{'sep-covered':>11} {'r/2>eps':>7}")
        for row in r["paper_radii"]:
            print(f"  {row['eps']:>7.4f} {row['clean_accuracy']:>6.4f} "
                  f"{row['half_gap_certified_accuracy']:>11.4f} {row['bisector_certified_accuracy']:>11.4f} "
                  f"{row['exact_robust_accuracy']:>6.4f} {row['separation_covered_fraction']:>11.4f} "
                  f"{str(row['separation_promise_holds']):>7}")


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=DATASETS, default="mnist", help="image dataset")
    ap.add_argument("--data-root", default=None,
                    help="data folder (default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--norm", choices=("inf", "2", "both"), default="both",
                    help="perturbation norm")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--box", dest="box", action="store_true", default=True,
                   help="perturbed images stay in the pixel box [0, 1] (default)")
    g.add_argument("--no-box", dest="box", action="store_false",
                   help="unconstrained perturbations (no pixel box)")
    ap.add_argument("--n-train", type=int_sci(2, "--n-train"), default=None,
                    help="seeded random training subset (default: the full training set)")
    ap.add_argument("--n-test", type=int_sci(1, "--n-test"), default=None,
                    help="seeded random test subset (default: the full test set)")
    ap.add_argument("--first-test", type=int_sci(1, "--first-test"), default=None,
                    help="only the first K test points (reduced; reuses a full run's checkpoint)")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="subset seed, >= 0")
    ap.add_argument("--chunk", type=int_sci(1, "--chunk", 4096), default=256,
                    help="test points per checkpoint")
    ap.add_argument("--out", default="results/nn_exact", metavar="DIR",
                    help="output folder for <dataset>_<norm>_<box|nobox>.json and .npz")
    add_force_arg(ap)
    add_engine_args(ap)
    args = ap.parse_args(argv)
    norms = ["inf", "2"] if args.norm == "both" else [args.norm]
    eng = check_engine_args(args)        # before any work: Ray installed, cluster reachable
    cfg = Config(dataset=args.dataset, data_root=args.data_root, n_train=args.n_train,
                 n_test=args.n_test, first_test=args.first_test, norms=norms, box=args.box,
                 seed=args.seed, chunk=args.chunk,
                 out=args.out, force=args.force, **eng)
    check_outputs(cfg)
    out = run(cfg)
    print_report(out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
