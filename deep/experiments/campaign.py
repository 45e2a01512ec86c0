"""Budgeted campaigns of the papers' network experiments, made for one short GPU session.

    python -m deep.campaign yrzsc-mnist --budget-s 540 --out runs/campaign --device cuda
    python -m deep.campaign pl --budget-s 540 --out runs/campaign --device cuda --cifar-root .carry
    python -m deep.campaign all --budget-s 540 --out runs/campaign --device cuda \\
        --data-root .carry --cifar-root .carry --archive runs/campaign.tar.gz
    python -m deep.campaign prepare --cifar-root ../shared/data/cifar10-jpeg --out .carry/cifar10_u8.npz

``yrzsc-mnist``: YRZSC Tables 2, 9 and 10 (MNIST, CNN1 and CNN2, ten methods, PGD-10 and
multi-targeted attack; ``deep.experiments.campaign_yrzsc``). ``pl``: the P&L network experiments
in order of priority (throughput, MNIST scaling law, PCA features and SNCE trade-off and robust
overfitting on the JPEG-approximate CIFAR-10 copy; ``deep.experiments.campaign_pl``). ``all``:
both, the budget split by priority (``--yrzsc-share`` of it to YRZSC first, the rest plus
whatever YRZSC left unused to P&L). ``prepare``: decode the CIFAR-10 JPEG copy once into a
uint8 ``.npz`` (needs Pillow) so the device machine needs neither Pillow nor the JPEG files.

Every finished run is written at once as its own JSON; the command stops within ``--budget-s``
seconds (and on SIGTERM/SIGINT), writes the combined tables and a manifest with provenance and
every deviation from the papers' protocols, and packs all result files into ``--archive``.
Rerunning the same command resumes: finished runs are skipped, unfinished ones continue from their
checkpoints. Existing files are never replaced by accident: ``prepare`` refuses an existing
``--out`` and the campaign an existing ``--archive`` that it did not write itself for this
``--out`` (a rerun replaces its own archive) unless ``--force`` is given. ``--tiny`` is a CPU preset for tests (a few dozen examples, one epoch, one attack
step).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from plumbing.cli import (OneLineArgumentParser, UsageError, add_force_arg, float_range, int_sci,
                          run_main)

PROG = "python -m deep.campaign"
COMMANDS = ("yrzsc-mnist", "pl", "all", "prepare")
DEFAULT_YRZSC_SHARE = 0.55


def _check_out_dir(path: Path, flag: str) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: exists and is not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot write under {probe}")
    return path


def _check_out_file(path: Path, flag: str, suffixes: tuple[str, ...], *, force: bool = False,
                    ours: bool = False) -> Path:
    """An output file: right suffix, not a folder, writable folder; an existing file is refused
    unless ``force`` or ``ours`` (this command wrote it before and may replace it)."""
    path = Path(path)
    if not any(str(path).endswith(s) for s in suffixes):
        raise UsageError(f"{flag} {path}: must end with {' or '.join(suffixes)}")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder")
    if path.exists() and not path.is_file():
        raise UsageError(f"{flag} {path}: exists and is not a regular file")
    _check_out_dir(path.parent if str(path.parent) else Path("."), flag)
    if path.is_file() and not (force or ours):
        raise UsageError(f"{flag} {path} already exists; pass --force to replace it, or choose "
                         f"another path")
    return path


def _archs(text: str) -> tuple[str, ...]:
    from deep.experiments.campaign_yrzsc import ARCHS

    names = tuple(a.strip().lower() for a in text.split(","))
    if not names or any(a not in ARCHS for a in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a comma-separated list of distinct networks "
                                         f"among {', '.join(ARCHS)}; got {text!r}")
    return names


def build_parser() -> OneLineArgumentParser:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=COMMANDS)
    ap.add_argument("--budget-s", type=float_range(0.0, None, low_open=True, name="--budget-s"),
                    default=None, help="wall-clock budget of the whole command in seconds "
                                       "(required except for prepare)")
    ap.add_argument("--out", default=None, help="output folder (prepare: the .npz file)")
    ap.add_argument("--archive", default=None,
                    help="pack every result file into this .tar.gz at the end (default: "
                         "OUT/campaign_results.tar.gz)")
    ap.add_argument("--data-root", default=None,
                    help="folder holding mnist/ (default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--cifar-root", default=None,
                    help="CIFAR-10 copy: a prepared .npz (see prepare), a folder holding "
                         "cifar10_u8.npz, or the cifar10-jpeg folder (needs Pillow); P&L items 3-4 "
                         "are skipped with a message without it")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N (default cpu)")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0)
    ap.add_argument("--epochs", type=int_sci(1, "--epochs"), default=None,
                    help="YRZSC epochs per run (default: chosen by the timing pilot)")
    ap.add_argument("--yrzsc-share", type=float_range(0.0, 1.0, low_open=True, name="--yrzsc-share"),
                    default=DEFAULT_YRZSC_SHARE,
                    help=f"all: fraction of the budget for YRZSC (default {DEFAULT_YRZSC_SHARE})")
    ap.add_argument("--archs", type=_archs, default=None,
                    help="YRZSC networks of this command: cnn1, cnn2 or cnn1,cnn2 (default both); "
                         "separate commands into the same --out join one set of tables")
    ap.add_argument("--mt-eval-size", type=int_sci(1, "--mt-eval-size"), default=None,
                    help="YRZSC: fixed train/test subset for the multi-targeted attack (default 1000)")
    ap.add_argument("--threads", type=int_sci(1, "--threads"), default=None,
                    help="torch CPU threads (default: torch's; --tiny: 1, which avoids thread "
                         "contention on a shared CPU)")
    ap.add_argument("--cifar-train-size", type=int_sci(10, "--cifar-train-size"), default=None,
                    help="prepare: keep a class-balanced subset of this many training images")
    ap.add_argument("--cifar-test-size", type=int_sci(10, "--cifar-test-size"), default=None,
                    help="prepare: keep a class-balanced subset of this many test images")
    ap.add_argument("--tiny", action="store_true", help="tiny CPU preset for tests")
    add_force_arg(ap)
    ap.add_argument("--stop-after-runs", type=int_sci(1, "--stop-after-runs"), default=None,
                    help=argparse.SUPPRESS)  # testing hook: behave as if the budget ran out
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        from deep.experiments.campaign_pl import prepare_cifar_npz

        if args.cifar_root is None or args.out is None:
            raise UsageError("prepare needs --cifar-root (the cifar10-jpeg folder or its .tar.gz) "
                             "and --out (the .npz to write)")
        out = _check_out_file(Path(args.out), "--out", (".npz",), force=args.force)
        path = prepare_cifar_npz(args.cifar_root, out, args.cifar_train_size, args.cifar_test_size,
                                 args.seed)
        print(f"wrote {path}")
        return 0
    if args.budget_s is None:
        raise UsageError(f"{args.command} needs --budget-s SECONDS")
    out = _check_out_dir(Path(args.out or "runs/campaign"), "--out")
    from deep.experiments.campaign_common import (Budget, archive_is_ours, install_signal_stop, log,
                                                  pack_archive, restore_signals)

    archive_path = Path(args.archive) if args.archive else out / "campaign_results.tar.gz"
    archive = _check_out_file(archive_path, "--archive", (".tar.gz", ".tgz"), force=args.force,
                              ours=archive_is_ours(out, archive_path))
    from deep.experiments.experiment import resolve_device

    device = resolve_device(args.device)  # one clear line before any work
    if device.type == "cuda":   # before the first cuBLAS call (P&L runs use deterministic kernels)
        from deep.experiments.pl_runs import use_cublas_determinism
        use_cublas_determinism()
    import torch

    threads = args.threads or (1 if args.tiny else None)
    if threads:
        torch.set_num_threads(threads)
    budget = Budget(float(args.budget_s), stop_after_runs=args.stop_after_runs)
    previous = install_signal_stop(budget)
    try:
        if args.command in ("yrzsc-mnist", "all"):
            from deep.experiments import campaign_yrzsc as cy

            cfg = yrzsc_config(args, out)
            share = budget.sub(budget.seconds * (args.yrzsc_share if args.command == "all" else 1.0))
            cy.run(cfg, share)
        if args.command in ("pl", "all") and not budget.stopped():
            from deep.experiments import campaign_pl as cp

            cfg = cp.pl_config(args, out)
            cp.run(cfg, budget.sub(budget.remaining()))
    finally:
        restore_signals(previous)
        path = pack_archive(out, archive)
        log(f"archive: {path} ({path.stat().st_size} bytes)")
    return 0


def yrzsc_config(args, out: Path):
    from deep.experiments import campaign_yrzsc as cy

    kw = dict(out=out, device=args.device, data_root=args.data_root, seed=args.seed,
              epochs=args.epochs)
    if args.tiny:
        kw.update({k: v for k, v in cy.TINY.items()}, tiny=True)
    if args.mt_eval_size is not None:
        kw["mt_eval_size"] = args.mt_eval_size
    if args.archs is not None:
        kw["archs"] = args.archs
    return cy.YrzscConfig(**kw)


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
