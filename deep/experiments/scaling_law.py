"""Robust scaling laws (P&L Section 4.2 / Figure 1; MNIST: Section 9.3 / Figure 7; compute: 9.1 / Fig. 5).

Data scaling (default): for every model and every training-set size n (class-balanced subsets,
sizes 2^k), train with a fixed compute budget: "when we divide the dataset size by some value k we
also multiply the number of epochs by k". ``--epochs E`` is the number of epochs at the largest
size N of ``--sizes``; size n gets round(E * N / n) passes over its data (grouped into trainer
epochs of at least ``--min-epoch-examples`` examples, see ``deep.pl_runs``).

Compute scaling (``--compute-scaling``, Sec. 9.1): one training-set size ``--size`` and every
epoch count of ``--epoch-list``.

Every run records clean accuracy and certified robust accuracy (CRA, Eq. 3) at 36/255 and the
other radii on train and test, per evaluation epoch; one JSON per run under ``--out`` and a
summary table (``--summary``, default ``<out>/summary.json``).

Models: ``simple_convnet`` (standard, temperature-1/8 CE), ``aol_mlp`` and ``cpl_convnet``
(1-Lipschitz, OffsetCrossEntropy with offset = temperature = 0.25), as in Sec. 4.1. MNIST is
padded to 32x32 with its mean (0 after the subtraction), base width 16 / MLP width 1024, and
augmented by random crops only (no flip, a choice of this project, see docs/pl_experiments.md;
no erasing, Sec. 9.3).
"""
from __future__ import annotations

import sys
import time

from deep.experiments import pl_runs
from deep.experiments.experiment import add_common_args, parse_common, resolve_device
from deep.experiments.grid import run_grid
from plumbing.distributed import is_main_process
from plumbing.cli import OneLineArgumentParser, UsageError, csv_list, int_sci, run_main

RESUMABLE = True  # Ctrl-C: finished runs are kept and the interrupted one resumes
PROG = "python -m deep.scaling_law"
DEFAULT_MODELS = ("simple_convnet", "aol_mlp", "cpl_convnet")
DEFAULT_SIZES = tuple(2 ** k for k in range(6, 16))        # 64 ... 32768
TINY_SIZES = (32, 64)
DEFAULT_EPOCHS = 100
DEFAULT_LR = {"simple_convnet": 0.002, "aol_mlp": 0.1, "cpl_convnet": 0.1}  # simple_convnet: T=1/8 CE diverges at 0.01 on short runs

# The full-scale MNIST run that needs a GPU; README and --help quote it.
GPU_COMMAND = ("python -m deep.scaling_law --dataset mnist --device cuda --models aol_mlp,cpl_convnet "
               "--sizes 2^5,2^6,2^7,2^8,2^9,2^10,2^11,2^12,2^13,2^14,2^15,60000 --epochs 50 "
               "--out runs/scaling_law_mnist --summary results/scaling_law_mnist.json")

EPILOG = f"""Full-scale MNIST run (Sec. 9.3 setup: MLP width 1024, ConvNet base 16, 32x32 inputs; needs a
GPU, not run on the CPU): {GPU_COMMAND} . Rerunning the same command skips finished runs and resumes
an interrupted one, so it may be split with --models. Reduced CPU configuration committed in
results/scaling_law_mnist_cpu_small.json (see its 'note')."""


def curve(summary: dict, model: str, key: str = "test_cra_36") -> tuple[list[int], list[float]]:
    """(sizes, values) of one model from a data-scaling summary, sorted by size."""
    rows = sorted((r for r in summary["runs"] if r["model"] == model and r.get(key) is not None),
                  key=lambda r: r["train_size"])
    if not rows:
        raise ValueError(f"summary has no runs of model {model!r} with {key}")
    return [r["train_size"] for r in rows], [float(r[key]) for r in rows]


def gain_per_doubling(sizes, values) -> float:
    """Least-squares slope of ``values`` against log2(size): the gain per doubling of the data
    (Sec. 4.2: "about 5%" for CRA on CIFAR-10; Sec. 9.3: "about 7%" on small MNIST subsets)."""
    import numpy as np

    s = np.log2(np.asarray(sizes, dtype=float))
    v = np.asarray(values, dtype=float)
    if s.size < 2 or s.size != v.size or np.ptp(s) == 0:
        raise ValueError("need values at two or more distinct sizes")
    return float(np.polyfit(s, v, 1)[0])


def crossing_size(sizes, values, level: float) -> float | None:
    """Smallest size at which ``values`` reach ``level``, linearly interpolated in log2(size)
    between the two neighbouring measured sizes (Sec. 9.3: "about 234 training examples to
    reach 90% certified robust accuracy"); None if the level is never reached."""
    import math

    pts = sorted(zip(sizes, values))
    if pts and pts[0][1] >= level:
        return float(pts[0][0])
    for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
        if v0 < level <= v1:
            f = (level - v0) / (v1 - v0)
            return float(2 ** (math.log2(s0) + f * (math.log2(s1) - math.log2(s0))))
    return None


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], epilog=EPILOG)
    add_common_args(ap, default_out="runs/scaling_law")
    ap.add_argument("--models", type=csv_list(str, "--models"), default=list(DEFAULT_MODELS),
                    help=f"comma-separated models from {', '.join(pl_runs.MODEL_CHOICES)} "
                         f"(default {','.join(DEFAULT_MODELS)})")
    ap.add_argument("--sizes", type=csv_list(pl_runs.parse_size, "--sizes"), default=None,
                    help="comma-separated training-set sizes, integers or 2^k (default 2^6..2^15)")
    ap.add_argument("--compute-scaling", action="store_true",
                    help="Sec. 9.1: fixed --size, every epoch count of --epoch-list")
    ap.add_argument("--size", type=pl_runs.parse_size, default=None,
                    help="training-set size for --compute-scaling (default 2^12)")
    ap.add_argument("--epoch-list", type=csv_list(int_sci(1, "--epoch-list"), "--epoch-list"), default=None,
                    help="epoch counts for --compute-scaling (default 25,50,100,200,400)")
    ap.add_argument("--min-epoch-examples", type=int_sci(1, "--min-epoch-examples"), default=None,
                    help="group passes over tiny subsets into trainer epochs of at least this many "
                         "examples (default 16384; 1 = literal epochs)")
    pl_runs.add_run_args(ap)
    args = ap.parse_args(argv)
    common = parse_common(args)
    pl_runs.check_models(args.models)
    if args.compute_scaling and args.sizes is not None:
        raise UsageError("--sizes is for data scaling; use --size with --compute-scaling")
    if not args.compute_scaling and (args.size is not None or args.epoch_list is not None):
        raise UsageError("--size and --epoch-list need --compute-scaling")
    device = resolve_device(common.device)
    min_ex = args.min_epoch_examples or (64 if common.tiny else 16384)

    plan = []  # (model, size, data passes)
    if args.compute_scaling:
        size = args.size or (64 if common.tiny else 2 ** 12)
        epoch_list = args.epoch_list or ([1, 2] if common.tiny else [25, 50, 100, 200, 400])
        for m in args.models:
            for e in epoch_list:
                plan.append((m, size, e))
    else:
        sizes = sorted(set(args.sizes or (TINY_SIZES if common.tiny else DEFAULT_SIZES)))
        ref_epochs = common.epochs or (1 if common.tiny else DEFAULT_EPOCHS)
        for m in args.models:
            for n in sizes:
                plan.append((m, n, pl_runs.epochs_for_size(n, sizes[-1], ref_epochs)))

    started = time.perf_counter()
    cfgs = []
    for m, n, passes in plan:
        r, trainer_epochs = pl_runs.group_passes(passes, n, min_ex)
        loss = (pl_runs.LossConfig("temperature_ce", temperature=1 / 8) if m == "simple_convnet"
                else pl_runs.LossConfig("offset_ce", offset=0.25, temperature=0.25))
        name = f"{common.dataset}_{m}_n{n}_p{passes}_s{common.seed}"
        cfgs.append(pl_runs.build_run(args, common, name=name, model=m, loss=loss,
                                      epochs=trainer_epochs, train_size=n, augment=True,
                                      passes_per_epoch=r, default_lr=DEFAULT_LR.get(m, 0.1)))
    rows = []
    for (m, n, passes), res in zip(plan, run_grid(args, common, device, cfgs)):
        row = pl_runs.summarize(res)
        row["data_passes"] = res.get("data_passes", passes)
        rows.append(row)
        cra = row.get("test_cra_36")
        if is_main_process():
            print(f"{m:15s} n={n:6d} passes={row['data_passes']:6d} test_acc={row['test_acc']:.4f} "
                  f"test_cra@36/255={'n/a' if cra is None else f'{cra:.4f}'} "
                  f"train_acc={row['train_acc']:.4f}", flush=True)
    pl_runs.write_summary(
        args, common, device, started, rows=rows,
        experiment="compute_scaling" if args.compute_scaling else "scaling_law",
        paper_ref="P&L Sec. 9.1, Fig. 5" if args.compute_scaling else "P&L Sec. 4.2 Fig. 1 / Sec. 9.3 Fig. 7",
        eps=list(pl_runs.RunConfig.__dataclass_fields__["eps"].default))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
