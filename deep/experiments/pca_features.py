"""Robust and non-robust features: training on principal-component ranges (P&L Section 4.4,
Table 1, Figure 3; without augmentation: Section 11, Figure 11).

The training and test images are projected onto a subset of the training set's principal
components and mapped back to image space (``deep.pca_projection``); a standard SimpleConvNet and a
1-Lipschitz CPL ConvNet are then trained with the unchanged setup. Reported per subset: variance
explained, train/test accuracy and CRA at 36/255 (the columns of Table 1).

Subsets are the rows of Table 1 (CIFAR-10 indices out of 3072). For MNIST (784 dimensions) each
range boundary is scaled proportionally, [a, b] -> [round((a-1)*784/3072)+1, round(b*784/3072)]:
1-16 -> 1-4, 1-512 -> 1-131, 513-3072 -> 132-784, 2049-3072 -> 524-784 (see
``deep.pca_projection``); the JSON records the ranges actually used.
"""
from __future__ import annotations

import sys
import time

from deep.experiments import pl_runs
from deep.experiments.experiment import add_common_args, parse_common, resolve_device
from deep.experiments.grid import run_grid
from plumbing.distributed import is_main_process
from deep.pca_projection import TABLE1_SUBSETS
from plumbing.cli import OneLineArgumentParser, UsageError, csv_list, run_main

RESUMABLE = True  # Ctrl-C: finished runs are kept and the interrupted one resumes
PROG = "python -m deep.pca_features"
DEFAULT_MODELS = ("simple_convnet", "cpl_convnet")
DEFAULT_EPOCHS = 200
DEFAULT_LR = {"simple_convnet": 0.002}  # see deep.scaling_law.DEFAULT_LR


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_common_args(ap, default_out="runs/pca_features")
    ap.add_argument("--models", type=csv_list(str, "--models"), default=list(DEFAULT_MODELS),
                    help=f"comma-separated models (default {','.join(DEFAULT_MODELS)})")
    ap.add_argument("--subsets", type=csv_list(str, "--subsets"), default=list(TABLE1_SUBSETS),
                    help=f"Table 1 rows (CIFAR-10 indices; scaled for MNIST): {', '.join(TABLE1_SUBSETS)}")
    ap.add_argument("--no-augment", action="store_true", help="train without augmentation (Sec. 11)")
    ap.add_argument("--train-size", type=pl_runs.parse_size, default=None,
                    help="class-balanced training subset (default: the whole training set)")
    pl_runs.add_run_args(ap)
    args = ap.parse_args(argv)
    common = parse_common(args)
    pl_runs.check_models(args.models)
    for s in args.subsets:
        if s not in TABLE1_SUBSETS:
            raise UsageError(f"--subsets: unknown subset {s!r}; choose from {', '.join(TABLE1_SUBSETS)}")
    device = resolve_device(common.device)
    epochs = common.epochs or (1 if common.tiny else DEFAULT_EPOCHS)
    train_size = args.train_size or (64 if common.tiny else None)
    started = time.perf_counter()
    cfgs, cells = [], []
    for sub in args.subsets:
        for m in args.models:
            loss = (pl_runs.LossConfig("temperature_ce", temperature=1 / 8) if m == "simple_convnet"
                    else pl_runs.LossConfig("offset_ce", offset=0.25, temperature=0.25))
            tag = sub.replace("&", "+")
            name = (f"{common.dataset}_{m}_pc{tag}_{'noaug' if args.no_augment else 'aug'}"
                    f"_n{train_size or 'all'}_e{epochs}_s{common.seed}")
            cfgs.append(pl_runs.build_run(args, common, name=name, model=m, loss=loss, epochs=epochs,
                                          train_size=train_size, augment=not args.no_augment,
                                          pca_subset=sub, default_lr=DEFAULT_LR.get(m, 0.1)))
            cells.append((sub, m))
    rows = []
    for (sub, m), res in zip(cells, run_grid(args, common, device, cfgs)):
        row = pl_runs.summarize(res)
        row.update(subset=sub, components=res["pca"]["components"],
                   variance_explained=res["pca"]["variance_explained"])
        rows.append(row)
        cra = row["test_cra_36"]
        if is_main_process():
            print(f"{sub:14s} ({row['components']:>14s}) var={row['variance_explained']:.4f} {m:15s} "
                  f"train_acc={row['train_acc']:.4f} test_acc={row['test_acc']:.4f} "
                  f"test_cra@36/255={'n/a' if cra is None else f'{cra:.4f}'}", flush=True)
    pl_runs.write_summary(args, common, device, started, rows=rows, experiment="pca_features",
                          paper_ref="P&L Sec. 4.4 Table 1 / Sec. 11", augment=not args.no_augment)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
