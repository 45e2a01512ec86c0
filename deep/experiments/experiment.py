"""Shared harness of the network experiments (``python -m deep.<experiment>``).

Every experiment takes ``--dataset``, ``--data-root``, ``--device``, ``--epochs``, ``--out``,
``--seed`` and ``--tiny`` (a CPU preset for CI: a few hundred examples, one or two epochs, small
widths; it prints "TINY smoke run: numbers are not results" and its summary JSON says
``"tiny": true``). Results are one JSON per run, written atomically with provenance (command,
commit, device, torch version, seed, wall time); a run whose JSON already exists is skipped, and a
run interrupted mid-way resumes from its checkpoint (see ``deep.trainer.fit``). Output paths
(``--out``, ``--summary``) and training-set sizes are checked before any data is loaded.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from plumbing.cli import TINY_BANNER, UsageError, int_sci
from plumbing.distributed import is_distributed, is_main_process, world_size
from plumbing.io import (atomic_write_json, check_output_dir, check_output_file, provenance,
                         read_json)
from plumbing.validation import check_choice, check_int

DATASETS = ("mnist", "fashion-mnist", "cifar10", "svhn")
# (train, test) examples of the official splits, to refuse an impossible subset size up front
SPLIT_SIZES = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000), "cifar10": (50000, 10000),
               "svhn": (73257, 26032)}


def check_split_size(value: int | None, option: str, dataset: str, split: str = "train",
                     extra: int = 0) -> int | None:
    """Refuse a subset size larger than the ``split`` of ``dataset`` (plus ``extra`` examples,
    e.g. the test split when training on train + test), naming the split's size."""
    if value is None or dataset not in SPLIT_SIZES:
        return value
    avail = SPLIT_SIZES[dataset][0 if split == "train" else 1] + extra
    if value > avail:
        shown = f"{value:.3g}" if value >= 1e9 else str(value)
        raise UsageError(f"{option} {shown} is larger than the {avail} {split} examples of {dataset}")
    return value


@dataclass
class ExperimentArgs:
    dataset: str
    data_root: str | None
    device: str
    epochs: int | None
    out: Path
    seed: int
    tiny: bool

    def __post_init__(self):
        check_choice("dataset", self.dataset, DATASETS)
        check_int("seed", self.seed, min_value=0)
        if self.epochs is not None:
            check_int("epochs", self.epochs, min_value=1)
        self.out = Path(self.out)


def add_common_args(ap: argparse.ArgumentParser, *, default_dataset: str = "mnist",
                    default_out: str = "runs/experiment", tiny_help: str | None = None) -> None:
    ap.add_argument("--dataset", default=default_dataset, choices=DATASETS,
                    help="dataset (CIFAR-10: see docs/cifar10.md)")
    ap.add_argument("--data-root", default=None,
                    help="data folder (default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ... (default cpu)")
    ap.add_argument("--epochs", type=int_sci(1, "--epochs"), default=None,
                    help="epochs (default: the experiment's own; see --tiny)")
    ap.add_argument("--out", default=default_out,
                    help=f"output folder for JSON, checkpoints, tables; finished runs in it are "
                         f"skipped and interrupted ones resumed (default {default_out})")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="seed, >= 0")
    ap.add_argument("--tiny", action="store_true",
                    help=tiny_help or "tiny CPU preset for CI and smoke tests (a few hundred examples, "
                                      "one or two epochs, small widths): numbers are not results")


def parse_common(args: argparse.Namespace) -> ExperimentArgs:
    """The shared flags as :class:`ExperimentArgs`; checks ``--out`` (and ``--summary``, where the
    command has it) before any work, and prints the smoke-run banner for ``--tiny``."""
    common = ExperimentArgs(dataset=args.dataset, data_root=args.data_root, device=args.device,
                            epochs=args.epochs, out=Path(args.out), seed=args.seed, tiny=args.tiny)
    check_output_dir(common.out, "--out")
    if hasattr(args, "summary"):
        check_output_file(args.summary or common.out / "summary.json", "--summary", existing="replace")
    ds = common.dataset
    poc_extra = SPLIT_SIZES.get(ds, (0, 0))[1] if getattr(args, "proof_of_concept", False) else 0
    check_split_size(getattr(args, "train_size", None), "--train-size", ds, "train", poc_extra)
    check_split_size(getattr(args, "size", None), "--size", ds, "train")
    for n in getattr(args, "sizes", None) or ():
        check_split_size(n, "--sizes", ds, "train")
    check_split_size(getattr(args, "test_size", None), "--test-size", ds, "test")
    if common.tiny and is_main_process():
        print(TINY_BANNER, flush=True)
    return common


def resolve_device(name: str) -> torch.device:
    """A torch.device from a user string; one clear error if it is unknown or unavailable."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device must be cpu, cuda or cuda:N; got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu, cuda or cuda:N; got {name!r}")
    if is_distributed():      # under torchrun: join the job; each rank takes cuda:LOCAL_RANK
        from deep.trainer import init_distributed

        dev = init_distributed(dev)
    return dev


def device_description(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return "cpu"


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG and ask for deterministic CPU kernels (same seed, same result)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def existing_result(path: Path) -> dict | None:
    """The finished result at ``path`` if present (runs are skipped when their JSON exists); a
    corrupt one raises ValueError naming the file.

    A run that diverged is never taken for finished: if its metrics file
    (``<stem>.metrics.json`` next to ``path``) says ``"status": "diverged"``, or its result records
    an epoch without a finite training loss, this raises ValueError (one line on the command line) naming the
    epoch and the file to delete to retry; this happens before any data is loaded."""
    from deep.trainer import diverged_record

    path = Path(path)
    metrics = path.with_name(path.stem + ".metrics.json")
    rec = diverged_record(metrics) if not path.is_file() else None
    if rec is not None:
        d = rec["diverged"]
        raise ValueError(f"run {path.stem} diverged at epoch {d.get('epoch')} (train loss "
                         f"{d.get('train_loss')}) in an earlier run of this configuration (see "
                         f"{metrics}); it would diverge again: lower --lr, or delete {metrics} to "
                         f"retry")
    if not path.is_file():
        return None
    remedy = "delete it to rerun that run"
    res = read_json(path, remedy=remedy)
    if not isinstance(res, dict):
        from plumbing.io import CorruptFileError
        raise CorruptFileError(f"{path} does not hold a run result; {remedy}")
    for h in res.get("history") or ():
        loss = h.get("train_loss", 0.0) if isinstance(h, dict) else 0.0
        if res.get("status") == "diverged" or not isinstance(loss, (int, float)) \
                or not math.isfinite(loss):
            raise ValueError(f"{path} records a diverged training (epoch {h.get('epoch') if isinstance(h, dict) else '?'} "
                             f"has train loss {loss}); it is not a result: lower --lr, or delete "
                             f"it to retry")
    return res


def write_result(path: Path, payload: dict, *, seed: int, device: torch.device, started: float,
                 **extra) -> Path:
    """Write ``payload`` plus a ``provenance`` block atomically to ``path`` (under torchrun: on
    rank 0 only; the other ranks return the path without writing)."""
    if not is_main_process():
        return Path(path)
    from deep.data import loaded_fidelity_json

    rec = dict(payload)
    fid = loaded_fidelity_json(rec["dataset"]) if "dataset" in rec else loaded_fidelity_json()
    rec.update({k: v for k, v in fid.items() if k not in rec})
    if is_distributed():
        extra.setdefault("torchrun_processes", world_size())
    rec["provenance"] = provenance(seed=seed, wall_seconds=time.perf_counter() - started,
                                   device=device_description(device), **extra)
    return atomic_write_json(path, rec)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Model outputs for ``x`` in eval mode, batched, on the model's device; returned on CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(outs)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    check_int("batch_size", batch_size, min_value=1)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    return float((predict_logits(model, x, batch_size).argmax(1) == y.cpu()).float().mean())
