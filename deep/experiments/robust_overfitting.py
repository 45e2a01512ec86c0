"""Robust overfitting (P&L Section 4.3 / Figure 2; Section 10 / Figure 8).

"In order to overfit robustly, we set the offset in our loss function to sqrt(2), and we train
without augmentation for 3000 epochs." We train the CPL ConvNet and the AOL MLP (Sec. 4.3; add
``aol_convnet`` / ``unified_convnet`` for Sec. 10) with OffsetCrossEntropy(offset, temperature
0.25) and no augmentation, and record the certified robust accuracy on the training set and on
the test set as a function of the radius (the curves of Fig. 2), plus the per-epoch metrics.
``--offset`` defaults to sqrt(2) (a certified radius of 1 at zero loss); Sec. 10 also uses
36/255 * sqrt(2) (``--offset 0.1996``).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from deep.experiments import pl_runs
from deep.experiments.experiment import add_common_args, parse_common, resolve_device
from deep.experiments.grid import run_grid
from plumbing.distributed import is_main_process
from plumbing.cli import OneLineArgumentParser, UsageError, csv_list, float_range, run_main
from theory.constants import ROBUST_OVERFIT_OFFSET

RESUMABLE = True  # Ctrl-C: finished runs are kept and the interrupted one resumes
PROG = "python -m deep.robust_overfitting"
DEFAULT_MODELS = ("cpl_convnet", "aol_mlp")
DEFAULT_EPOCHS = 3000   # Sec. 4.3
CURVE_EPS = tuple(float(e) for e in np.round(np.linspace(0.0, 2.0, 21), 4))


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_common_args(ap, default_out="runs/robust_overfitting")
    ap.add_argument("--models", type=csv_list(str, "--models"), default=list(DEFAULT_MODELS),
                    help=f"comma-separated 1-Lipschitz models (default {','.join(DEFAULT_MODELS)})")
    ap.add_argument("--offset", type=float_range(0, None, name="--offset"), default=ROBUST_OVERFIT_OFFSET,
                    help="offset of OffsetCrossEntropy (default sqrt(2), Sec. 4.3)")
    ap.add_argument("--train-size", type=pl_runs.parse_size, default=None,
                    help="class-balanced training subset (default: the whole training set)")
    pl_runs.add_run_args(ap, default_lr=0.1)
    args = ap.parse_args(argv)
    common = parse_common(args)
    for m in args.models:
        if m not in pl_runs.MODEL_CHOICES or m == "simple_convnet":
            raise UsageError(f"--models: {m!r} is not a 1-Lipschitz model; choose from "
                             f"{', '.join(x for x in pl_runs.MODEL_CHOICES if x != 'simple_convnet')}")
    device = resolve_device(common.device)
    epochs = common.epochs or (2 if common.tiny else DEFAULT_EPOCHS)
    train_size = args.train_size or (64 if common.tiny else None)
    started = time.perf_counter()
    cfgs = []
    for m in args.models:
        loss = pl_runs.LossConfig("offset_ce", offset=args.offset, temperature=0.25)
        name = f"{common.dataset}_{m}_off{args.offset:.4f}_n{train_size or 'all'}_e{epochs}_s{common.seed}"
        cfgs.append(pl_runs.build_run(args, common, name=name, model=m, loss=loss, epochs=epochs,
                                      train_size=train_size, augment=False, curve_eps=CURVE_EPS))
    rows = []
    for m, res in zip(args.models, run_grid(args, common, device, cfgs)):
        row = pl_runs.summarize(res)
        row["cra_curve"] = res["cra_curve"]
        rows.append(row)
        tr, te = res["cra_curve"]["train"], res["cra_curve"]["test"]
        i1 = CURVE_EPS.index(1.0)
        if is_main_process():
            print(f"{m:15s} train_acc={row['train_acc']:.4f} test_acc={row['test_acc']:.4f} "
                  f"train_cra@36/255={row['train_cra_36']:.4f} test_cra@36/255={row['test_cra_36']:.4f} "
                  f"train_cra@1={tr[i1]:.4f} test_cra@1={te[i1]:.4f}", flush=True)
    pl_runs.write_summary(args, common, device, started, rows=rows, experiment="robust_overfitting",
                          paper_ref="P&L Sec. 4.3 Fig. 2 / Sec. 10 Fig. 8", offset=args.offset)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
