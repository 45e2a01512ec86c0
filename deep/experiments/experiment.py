"""Shared harness of the network experiments (``python -m deep.<experiment>``).

Every experiment takes ``--dataset``, ``--data-root``, ``--device``, ``--epochs``, ``--out``,
``--seed`` and ``--tiny`` (a CPU preset for CI: a few hundred examples, one or two epochs, small
widths). Results are one JSON per run, written atomically with provenance (command, commit,
device, torch version, seed, wall time); a run whose JSON already exists is skipped, and a run
interrupted mid-way resumes from its checkpoint (see ``deep.trainer.fit``).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from plumbing.cli import UsageError, int_sci
from plumbing.distributed import is_distributed, is_main_process, world_size
from plumbing.io import atomic_write_json, provenance, read_json
from plumbing.validation import check_choice, check_int

DATASETS = ("mnist", "fashion-mnist", "cifar10", "svhn")


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
                    default_out: str = "runs/experiment") -> None:
    ap.add_argument("--dataset", default=default_dataset, choices=DATASETS)
    ap.add_argument("--data-root", default=None,
                    help="data folder (default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ... (default cpu)")
    ap.add_argument("--epochs", type=int_sci(1, "--epochs"), default=None,
                    help="epochs (default: the experiment's own; see --tiny)")
    ap.add_argument("--out", default=default_out, help="output folder for JSON, checkpoints, tables")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0)
    ap.add_argument("--tiny", action="store_true", help="tiny CPU preset for CI and smoke tests")


def parse_common(args: argparse.Namespace) -> ExperimentArgs:
    return ExperimentArgs(dataset=args.dataset, data_root=args.data_root, device=args.device,
                          epochs=args.epochs, out=Path(args.out), seed=args.seed, tiny=args.tiny)


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
    """The finished result at ``path`` if present (runs are skipped when their JSON exists)."""
    return read_json(path) if Path(path).is_file() else None


def write_result(path: Path, payload: dict, *, seed: int, device: torch.device, started: float,
                 **extra) -> Path:
    """Write ``payload`` plus a ``provenance`` block atomically to ``path`` (under torchrun: on
    rank 0 only; the other ranks return the path without writing)."""
    if not is_main_process():
        return Path(path)
    from deep.data import loaded_fidelity_json

    rec = dict(payload)
    rec.update({k: v for k, v in loaded_fidelity_json().items() if k not in rec})
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
