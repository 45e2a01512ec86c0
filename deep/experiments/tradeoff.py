"""One architecture, accuracy or certified robustness (P&L Section 4.5, Table 3, Figure 4).

The single architecture of Sec. 4.5 (``unified_convnet``: the AOL ConvNet with orthogonal
initialisation, its output normalisation folded into the loss) is trained with the
Self-Normalizing CrossEntropy of Eq. (4) for every trade-off value of ``--ts``; the model and all
other settings stay identical. Reported per t: clean accuracy and CRA at 36/255 (Table 3's columns).
"""
from __future__ import annotations

import sys
import time

from deep.experiments import pl_runs
from deep.experiments.experiment import add_common_args, parse_common, resolve_device
from deep.experiments.grid import run_grid
from plumbing.distributed import is_main_process
from plumbing.cli import OneLineArgumentParser, UsageError, csv_list, float_range, run_main

RESUMABLE = True  # Ctrl-C: finished runs are kept and the interrupted one resumes
PROG = "python -m deep.tradeoff"
DEFAULT_TS = (0.0, 1.0, 2.0, 5.0, 10.0)
DEFAULT_EPOCHS = 200


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_common_args(ap, default_out="runs/tradeoff")
    ap.add_argument("--ts", type=csv_list(float_range(0, None, name="--ts"), "--ts"), default=list(DEFAULT_TS),
                    help=f"trade-off values t >= 0 of Eq. (4) (default {','.join(f'{t:g}' for t in DEFAULT_TS)})")
    ap.add_argument("--model", default="unified_convnet",
                    help="model (default unified_convnet, the Sec. 4.5 architecture)")
    ap.add_argument("--train-size", type=pl_runs.parse_size, default=None,
                    help="class-balanced training subset (default: the whole training set)")
    pl_runs.add_run_args(ap, default_lr=0.1)
    args = ap.parse_args(argv)
    common = parse_common(args)
    if args.model not in pl_runs.MODEL_CHOICES or args.model == "simple_convnet":
        raise UsageError(f"--model must be a 1-Lipschitz model (its CRA is certified), got {args.model!r}")
    device = resolve_device(common.device)
    epochs = common.epochs or (1 if common.tiny else DEFAULT_EPOCHS)
    train_size = args.train_size or (64 if common.tiny else None)
    started = time.perf_counter()
    cfgs = []
    for t in args.ts:
        loss = pl_runs.LossConfig("self_normalizing_ce", t=t)
        name = f"{common.dataset}_{args.model}_t{t:g}_n{train_size or 'all'}_e{epochs}_s{common.seed}"
        cfgs.append(pl_runs.build_run(args, common, name=name, model=args.model, loss=loss,
                                      epochs=epochs, train_size=train_size, augment=True))
    rows = []
    for t, res in zip(args.ts, run_grid(args, common, device, cfgs)):
        row = pl_runs.summarize(res)
        row["t"] = t
        rows.append(row)
        if is_main_process():
            print(f"t={t:<6g} test_acc={row['test_acc']:.4f} test_cra@36/255={row['test_cra_36']:.4f} "
                  f"train_acc={row['train_acc']:.4f} train_cra@36/255={row['train_cra_36']:.4f}",
                  flush=True)
    pl_runs.write_summary(args, common, device, started, rows=rows, experiment="tradeoff",
                          paper_ref="P&L Sec. 4.5 Table 3 / Fig. 4")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
