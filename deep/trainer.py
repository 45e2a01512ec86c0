"""Generic, resumable training loop shared by every experiment of both papers.

P&L Section 4.1: SGD with Nesterov momentum 0.9, batch 256, OneCycleLR. YRZSC Appendix A uses
SGD (with or without momentum) or Adam with a constant or step schedule: all are options of
:class:`TrainConfig`.

Determinism and resume: epoch e shuffles with a generator seeded by (seed, e) and seeds torch's
global RNG with the same value before the epoch (for dropout and augmentation), so a run resumed
from the checkpoint of epoch e continues exactly as an uninterrupted run would (CPU).
Checkpoints (model, optimiser, scheduler, history) are written atomically after every epoch.

Divergence: a step whose loss is not finite (NaN or infinite, e.g. from a far too large learning
rate) ends training at once with :class:`TrainingDiverged`; the metrics file then holds
``"status": "diverged"`` with the epoch, step and loss, and the checkpoint keeps the last finite
epoch. Training the same configuration again refuses at once with the same error (it would diverge
again: same seed, same result); delete the metrics file to retry.

Several processes (``torchrun --nproc-per-node N``, or any initialised ``torch.distributed``
process group): the model is wrapped in DistributedDataParallel and every step's global batch of
``batch_size`` examples (the paper's batch) is drawn exactly as in one process, augmented as a
whole on every rank (same generator, so the same draws), and split into N contiguous shards, one
per rank (per-rank batch = batch_size / N). Each rank's mean loss is weighted by its share of
the global batch, so DDP's gradient average is the gradient of the global batch mean even when
the last batch does not divide evenly: the parameters equal those of one process up to the order
of floating-point reduction. Only rank 0 writes the checkpoint and metrics file. Caveats:
BatchNorm is converted to SyncBatchNorm on CUDA (statistics over the global batch); on the CPU
(gloo) SyncBatchNorm is unsupported, so BatchNorm statistics are per rank (per-rank batch) and
the numbers differ from one process. Dropout draws from torch's global RNG, seeded per epoch with
``seed + rank``: ranks draw independent masks, so runs with dropout are reproducible for a given
N but not equal to one process.
"""
from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from theory.constants import BATCH_SIZE, SGD_MOMENTUM
from plumbing.cli import RunFailed
from plumbing.io import atomic_write_bytes, atomic_write_json, checkpoint_state, load_checkpoint, read_json
from plumbing.progress import progress
from plumbing.validation import check_choice, check_float, check_int

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("onecycle", "constant", "cosine")


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = BATCH_SIZE
    lr: float = 0.1               # peak learning rate for OneCycle, else the base rate
    momentum: float = SGD_MOMENTUM
    nesterov: bool = True
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    schedule: str = "onecycle"
    seed: int = 0
    grad_clip: float | None = None

    def __post_init__(self):
        check_int("epochs", self.epochs, min_value=1)
        check_int("batch_size", self.batch_size, min_value=1)
        check_float("lr", self.lr, low=0.0, low_open=True)
        check_float("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_float("weight_decay", self.weight_decay, low=0.0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("seed", self.seed, min_value=0)
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, low=0.0, low_open=True)
        if self.nesterov and self.momentum == 0 and self.optimizer == "sgd":
            raise ValueError("nesterov requires momentum > 0; set nesterov=False or momentum in (0, 1)")


class TrainingDiverged(RunFailed):
    """Training produced a non-finite loss; ``epoch``, ``step``, ``train_loss`` say where."""

    def __init__(self, epoch: int, step: int | None, train_loss: float, lr: float,
                 metrics_path=None, earlier: bool = False):
        self.epoch, self.step, self.train_loss = epoch, step, train_loss
        where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
        rec = f"; recorded as diverged in {metrics_path}" if metrics_path is not None else ""
        if earlier:
            rec = (f" in an earlier run of this configuration (recorded in {metrics_path}); it "
                   f"would diverge again: lower --lr, or delete that file to retry")
        else:
            rec += f"; lower --lr (it is {lr:g})"
        super().__init__(f"training diverged at {where} (train loss {train_loss}){rec}")


def diverged_record(metrics_path) -> dict | None:
    """The ``diverged`` entry of a metrics file written by :func:`fit`, or None (no file, not
    diverged, or unreadable: an unreadable metrics file is rewritten by the next run)."""
    if metrics_path is None or not Path(metrics_path).is_file():
        return None
    try:
        rec = read_json(metrics_path)
    except ValueError:
        return None
    if isinstance(rec, dict) and rec.get("status") == "diverged" and isinstance(rec.get("diverged"), dict):
        return rec
    return None


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2 ** 63 - 1)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, steps_per_epoch: int):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                              nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def distributed_context(model: torch.nn.Module, device: torch.device):
    """(rank, world size, model to train) for this process. With an initialised process group of
    more than one process the model is wrapped in DistributedDataParallel (BatchNorm converted to
    SyncBatchNorm on CUDA); otherwise (0, 1, model)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 0, 1, model
    if device.type == "cuda" and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                     for m in model.modules()):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return dist.get_rank(), dist.get_world_size(), ddp


def init_distributed(device: str | torch.device = "cpu") -> torch.device:
    """Join the torchrun job this process belongs to (no-op outside torchrun) and return the
    device this rank uses: ``cuda:LOCAL_RANK`` for a CUDA device, the CPU otherwise. Backend
    nccl on CUDA, gloo on the CPU."""
    from plumbing.distributed import is_distributed, local_rank

    dev = torch.device(device)
    if dev.type == "cuda" and is_distributed():
        dev = torch.device("cuda", local_rank())
        torch.cuda.set_device(dev)
    dist = torch.distributed
    if is_distributed() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dev


def shard_bounds(size: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global batch of ``size`` that rank ``rank`` of ``world`` trains on:
    contiguous, sizes differing by at most one."""
    return size * rank // world, size * (rank + 1) // world


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(checkpoint_state(state), buf)   # plain types: read back with weights_only=True
    atomic_write_bytes(path, buf.getvalue())


def fit(model: torch.nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *,
        augment: Callable | None = None, evaluate: Callable | None = None,
        checkpoint: str | Path | None = None, metrics_path: str | Path | None = None,
        stop_after_epochs: int | None = None, desc: str = "train") -> list[dict]:
    """Train ``model`` with ``loss_fn(model, xb, yb) -> scalar loss`` on tensors (x, y).

    ``augment(xb, generator) -> xb`` is applied per batch; ``evaluate(model, epoch) -> dict`` runs
    after every epoch (model in eval mode) and its metrics join the epoch record. If ``checkpoint``
    exists, training resumes after its last completed epoch. ``stop_after_epochs`` ends this call
    early (as an interruption would) after that many epochs in total. Returns the history: one dict
    per epoch with ``epoch``, ``train_loss``, ``lr``, ``seconds`` and the evaluation metrics.
    """
    for _name, _t in (("x", x), ("y", y)):   # input validation (no silent numpy conversion)
        if not isinstance(_t, torch.Tensor):
            raise TypeError(f"{_name} must be a torch.Tensor, got {type(_t).__name__}; convert "
                            f"with torch.as_tensor({_name}) (images as float in [0, 1], labels as int64)")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x) == 0:
        raise ValueError("x must hold at least one example")
    device = next(model.parameters()).device
    n = len(x)
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    opt, sched = make_optimizer(model, cfg, steps)
    history: list[dict] = []
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    old = diverged_record(metrics_path)
    if old is not None and old.get("config") == asdict(cfg):
        d = old["diverged"]
        raise TrainingDiverged(d.get("epoch"), d.get("step"), d.get("train_loss"), cfg.lr,
                               metrics_path, earlier=True)
    if ckpt is not None and ckpt.is_file():
        state = load_checkpoint(ckpt, map_location=device,
                                required=("config", "model", "optimizer", "scheduler", "history", "epoch"))
        if state.get("config") != asdict(cfg):
            raise ValueError(f"checkpoint {ckpt} was written with a different configuration; "
                             f"delete it or use another --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = state["history"]
        start = state["epoch"] + 1
    rank, world, train_model = distributed_context(model, device)
    if world > 1 and min(cfg.batch_size, n - (steps - 1) * cfg.batch_size) < world:
        raise ValueError(f"batch_size: every global batch (the last holds "
                         f"{n - (steps - 1) * cfg.batch_size}) needs at least one example per "
                         f"process ({world})")
    last = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    for epoch in progress(range(start, last), total=last - start, desc=desc,
                          disable=None if rank == 0 else True):
        t0 = time.perf_counter()
        s = epoch_seed(cfg.seed, epoch)
        torch.manual_seed(s + rank)       # dropout: independent masks per rank
        gen = torch.Generator().manual_seed(s)
        perm = torch.randperm(n, generator=gen)
        model.train()
        total, count = 0.0, 0
        bad_step = None
        for b in range(steps):
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb = x[idx].to(device, non_blocking=True)
            yb = y[idx].to(device, non_blocking=True)
            if augment is not None:
                xb = augment(xb, gen)
            opt.zero_grad(set_to_none=True)
            if world > 1:                 # this rank's shard of the global batch
                lo, hi = shard_bounds(len(idx), rank, world)
                xb, yb = xb[lo:hi], yb[lo:hi]
                loss = loss_fn(train_model, xb, yb)
                # DDP averages gradients over ranks; weighting each shard's mean by its share of
                # the batch makes that average the gradient of the global batch mean
                (loss * ((hi - lo) * world / len(idx))).backward()
                total += float(loss.detach()) * (hi - lo)
            else:
                loss = loss_fn(model, xb, yb)
                value = float(loss.detach())
                if not math.isfinite(value):     # diverged: stop before the step spoils more
                    bad_step, total = b, value
                    break
                loss.backward()
                total += value * len(idx)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            count += len(idx)
        if world > 1:                     # the epoch's loss over the whole training set
            t = torch.tensor([total], dtype=torch.float64)
            torch.distributed.all_reduce(t)
            total = float(t.item())
        if bad_step is not None or not math.isfinite(total):   # (every rank sees the same total)
            loss_value = total if bad_step is not None else total / max(count, 1)
            if metrics_path is not None and rank == 0:
                atomic_write_json(metrics_path, {
                    "config": asdict(cfg), "status": "diverged",
                    "diverged": {"epoch": epoch, "step": bad_step, "train_loss": str(loss_value),
                                 "lr": opt.param_groups[0]["lr"]},
                    "history": history})
            model.eval()
            raise TrainingDiverged(epoch, bad_step, loss_value, cfg.lr, metrics_path)
        record = {"epoch": epoch, "train_loss": total / count, "lr": opt.param_groups[0]["lr"]}
        if evaluate is not None:
            model.eval()
            with torch.no_grad() if getattr(evaluate, "no_grad", False) else contextlib.nullcontext():
                record.update(evaluate(model, epoch))
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if ckpt is not None and rank == 0:
            _save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(), "epoch": epoch,
                                    "history": history, "config": asdict(cfg)})
        if metrics_path is not None and rank == 0:
            atomic_write_json(metrics_path, {"config": asdict(cfg), "history": history})
    model.eval()
    return history

