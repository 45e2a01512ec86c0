"""The P&L network experiments as grids on the sweep runner (:mod:`plumbing.sweep`).

One training run (:class:`deep.experiments.pl_runs.RunConfig`) plus where it writes and on which
device is a :class:`PLJob`, a frozen, validated config; :func:`pl_job_run` is its pure
``run(config) -> dict`` (skips a run whose JSON exists, resumes from its checkpoint, see
``pl_runs.run``). ``python -m deep.scaling_law`` (and robust_overfitting, pca_features, tradeoff)
build the list of jobs of their grid and hand it to :func:`run_grid`, which runs them one after
the other (``--engine local``) or as Ray tasks (``--engine ray``: one GPU per CUDA run, one CPU
otherwise). With Ray the datasets are read once by the driver and put in the object store once;
every task of a node reads that copy instead of the files. CPU runs use the driver's number of
torch threads (float sums depend on it), so a run's numbers equal the local engine's bit for bit
on the same machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plumbing.experiment import ConfigMixin, Experiment, device_resources


@dataclass(frozen=True)
class PLJob(ConfigMixin):
    """One run of a grid: its RunConfig, output folder, torch device name and data folder."""
    run: object
    out: str
    device: str = "cpu"
    data_root: str | None = None
    keep_checkpoint: bool = False
    KEY_PREFIX = "pl"

    def __post_init__(self):
        from deep.experiments.pl_runs import RunConfig

        if not isinstance(self.run, RunConfig):
            raise TypeError(f"run must be a RunConfig, got {type(self.run).__name__}")
        if not isinstance(self.out, str) or not self.out:
            raise ValueError("out must be a non-empty folder path")
        if not isinstance(self.device, str) or not self.device.split(":")[0] in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")


def _preload(splits) -> None:
    """Fill ``pl_runs``' per-process data cache from arrays shared through the object store."""
    import numpy as np
    import torch

    from deep.data import _record, to_tensor_images
    from deep.experiments import pl_runs

    for key, (images, labels, fidelity) in (splits or {}).items():
        if key not in pl_runs._CACHE:
            pl_runs._CACHE[key] = (to_tensor_images(images),
                                   torch.from_numpy(np.asarray(labels, dtype=np.int64)))
        name, split, root = key
        _record(name, root, split, fidelity)     # the result records the fidelity as a local load does


def pl_job_run(job: PLJob, workdir=None, *, splits=None, torch_threads=None) -> dict:
    """Train and evaluate one run (``pl_runs.run``); returns its result dict.

    ``torch_threads``: intra-op threads (Ray starts workers with one); CPU float sums depend on
    how they are split over threads, so the Ray engine passes the driver's count and a run gives
    the local engine's numbers bit for bit on the same machine."""
    import torch

    from deep.experiments import pl_runs

    if torch_threads is not None and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    _preload(splits)
    device = torch.device(job.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)     # a Ray GPU task sees only its own GPU, as index 0
    res = pl_runs.run(job.run, Path(job.out), device, job.data_root,
                      keep_checkpoint=job.keep_checkpoint)
    if res is None:
        raise RuntimeError(f"run {job.run.name} stopped before its last epoch")
    return res


PL_RUN = Experiment("pl", run=pl_job_run, resources=lambda job: device_resources(job.device))


def run_grid(args, common, device, run_configs) -> list[dict]:
    """Results of the grid's runs, in order, on the engine chosen by ``--engine``."""
    from plumbing.cli import UsageError
    from plumbing.distributed import is_distributed
    from plumbing.sweep import check_engine_args, run_sweep

    engine = check_engine_args(args)
    if engine["engine"] != "local" and is_distributed():
        raise UsageError("--engine ray and torchrun do not combine: under torchrun every run "
                         "already uses all the processes")
    jobs = [PLJob(run=c, out=str(common.out), device=str(device), data_root=common.data_root,
                  keep_checkpoint=bool(getattr(args, "keep_checkpoints", False)))
            for c in run_configs]
    shared = {}
    if engine["engine"] == "ray":
        from plumbing.datasets import load_dataset_with_fidelity

        splits = {}      # (images, labels, fidelity): results record the data's fidelity as locally
        for ds in sorted({c.dataset for c in run_configs}):
            for split in ("train", "test"):
                splits[(ds, split, str(common.data_root))] = load_dataset_with_fidelity(
                    ds, split, common.data_root)
        shared["splits"] = splits
        if str(device).startswith("cpu"):
            import torch

            shared["torch_threads"] = torch.get_num_threads()
    return run_sweep(PL_RUN, jobs, shared=shared, desc="runs", **engine)
